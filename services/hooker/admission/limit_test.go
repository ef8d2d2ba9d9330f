package admission

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const ms = time.Millisecond

func crowded(cut time.Duration, admitted time.Time) Sample {
	return Sample{Cut: cut, AdmittedAt: admitted, Crowded: true}
}

func TestLimitStartsAtInitialAndProbesUpToMax(t *testing.T) {
	l := NewLimit(Config{Initial: 4, Max: 10})
	if got := l.Current(); got != 4 {
		t.Fatalf("initial limit %d, want 4", got)
	}
	now := t0
	for i := range 20 {
		now = now.Add(10 * ms)
		l.Observe(crowded(60*ms, now), now)
		if want := min(10, 5+i); l.Current() != want {
			t.Fatalf("after %d quick cuts: limit %d, want %d (one per cut while probing, capped)", i+1, l.Current(), want)
		}
	}
}

func TestLimitDoesNotGrowWhenUnused(t *testing.T) {
	l := NewLimit(Config{Initial: 4, Max: 64})
	now := t0
	for range 100 {
		now = now.Add(time.Second)
		l.Observe(Sample{Cut: 60 * ms, AdmittedAt: now}, now) // alone: not crowded
	}
	if got := l.Current(); got != 4 {
		t.Fatalf("limit %d after quick cuts of freezes admitted alone, want 4: a quiet day must not raise it for a burst", got)
	}
}

func TestLimitShrinksOncePerGenerationPastTolerance(t *testing.T) {
	l := NewLimit(Config{Initial: 16, Max: 64})
	now := t0
	l.Observe(crowded(60*ms, now), now) // baseline 60ms; limit 17
	if l.Current() != 17 {
		t.Fatalf("limit %d, want 17", l.Current())
	}
	// Freezes admitted before any decrease report long cuts: the first
	// shrinks the limit, the others (the same crowd) do not again.
	admitted := now.Add(ms)
	now = now.Add(100 * ms)
	l.Observe(crowded(240*ms, admitted), now) // 4x: halved
	if l.Current() != 8 {
		t.Fatalf("after a cut at 4x the baseline: limit %d, want 8 (17 halved)", l.Current())
	}
	for range 10 {
		now = now.Add(ms)
		l.Observe(crowded(240*ms, admitted), now)
	}
	if l.Current() != 8 {
		t.Fatalf("cuts of freezes admitted before the decrease shrank it again: %d", l.Current())
	}
	// A freeze admitted after the decrease still cut slowly: shrink again,
	// by less for a cut just past the tolerance.
	now = now.Add(10 * ms)
	l.Observe(crowded(95*ms, now.Add(-ms)), now)
	if l.Current() != 7 {
		t.Fatalf("after a cut at 1.58x the baseline: limit %d, want 7 (8.5 x 0.9 floored)", l.Current())
	}
}

func TestLimitHoldsInTheDeadBandAndGrowsSlowlyAfterCongestion(t *testing.T) {
	l := NewLimit(Config{Initial: 10, Max: 64})
	now := t0
	l.Observe(crowded(100*ms, now), now) // baseline; 11
	now = now.Add(ms)
	l.Observe(crowded(300*ms, now.Add(-ms/2)), now) // 3x: 11 x 0.5 = 5.5
	if l.Current() != 5 {
		t.Fatalf("limit %d, want 5", l.Current())
	}
	for range 20 {
		now = now.Add(ms)
		l.Observe(crowded(140*ms, now), now) // 1.4x: between near and tolerance
	}
	if l.Current() != 5 {
		t.Fatalf("cuts in the dead band moved the limit to %d", l.Current())
	}
	// After congestion: about one more per limit's worth of quick cuts.
	for range 6 {
		now = now.Add(ms)
		l.Observe(crowded(110*ms, now), now)
	}
	if l.Current() != 6 {
		t.Fatalf("after 6 quick cuts at limit 5.5: limit %d, want 6", l.Current())
	}
}

func TestLimitRelearnsASlowerStorageAfterTheWindow(t *testing.T) {
	l := NewLimit(Config{Initial: 8, Max: 64, BaselineWindow: time.Minute})
	now := t0
	l.Observe(crowded(50*ms, now), now)
	// The storage got three times slower, for good.
	for range 10 {
		now = now.Add(ms)
		l.Observe(crowded(150*ms, now.Add(-ms/2)), now)
	}
	if l.Current() >= 8 {
		t.Fatalf("limit %d: slow cuts did not shrink it", l.Current())
	}
	low := l.Current()
	if b := l.Baseline(now); b != 50*ms {
		t.Fatalf("baseline %v within the window, want 50ms", b)
	}
	now = now.Add(time.Minute + time.Second)
	for range 40 {
		now = now.Add(ms)
		l.Observe(crowded(150*ms, now), now)
	}
	if b := l.Baseline(now); b != 150*ms {
		t.Fatalf("baseline %v past the window, want the new 150ms", b)
	}
	if l.Current() <= low {
		t.Fatalf("limit %d stayed at or below %d once the slower storage was the baseline", l.Current(), low)
	}
}

func TestLimitIgnoresAMissingCut(t *testing.T) {
	l := NewLimit(Config{})
	l.Observe(crowded(0, t0), t0)
	if l.Current() != DefaultInitial || l.Baseline(t0) != 0 {
		t.Fatalf("a zero cut changed the limit (%d) or the baseline (%v)", l.Current(), l.Baseline(t0))
	}
}

// A storage that cuts in a few milliseconds (a stand-in, a very fast
// array) is not throttled by the jitter of the measurement.
func TestLimitIgnoresJitterBelowTheNoiseFloor(t *testing.T) {
	l := NewLimit(Config{Initial: 4, Max: 8})
	now := t0
	for i := range 40 {
		now = now.Add(ms)
		cut := time.Duration(1+i%9) * ms // 1 to 9 ms: up to 9x the shortest
		l.Observe(crowded(cut, now.Add(-ms/2)), now)
	}
	if l.Current() != 8 {
		t.Fatalf("limit %d after cuts of 1 to 9 ms, want the max 8", l.Current())
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Initial: 100, Max: 8, Tolerance: 1.1}.withDefaults()
	if c.Initial != 8 || c.Max != 8 || c.NearBaseline != DefaultNearBaseline || c.Tolerance != DefaultTolerance || c.BaselineWindow != DefaultBaselineWindow || c.NoiseFloor != DefaultNoiseFloor {
		t.Fatalf("defaults %+v", c)
	}
}
