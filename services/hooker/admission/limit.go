package admission

import (
	"math"
	"time"
)

// Defaults of Config.
const (
	DefaultInitial        = 4
	DefaultMax            = 64
	DefaultNearBaseline   = 1.25
	DefaultTolerance      = 1.5
	DefaultBaselineWindow = 2 * time.Minute
	DefaultNoiseFloor     = 10 * time.Millisecond
)

// Config shapes every limit of a Gate. Zero fields take their defaults.
type Config struct {
	// Disabled admits every freeze at once; the gate still counts them.
	Disabled bool
	// Initial is the limit of a storage before any cut was measured.
	Initial int
	// Max caps the limit.
	Max int
	// NearBaseline: a cut up to this many times the baseline lets the
	// limit grow.
	NearBaseline float64
	// Tolerance: a cut longer than this many times the baseline shrinks
	// the limit; between NearBaseline and Tolerance it holds.
	Tolerance float64
	// BaselineWindow is how long a short cut keeps counting as what the
	// storage can do: a storage that became slower is relearned after it.
	BaselineWindow time.Duration
	// NoiseFloor is the shortest baseline cuts are compared with: a cut
	// measured over the API and the bus varies by milliseconds whatever
	// the storage does, so cuts this short say nothing of its load.
	NoiseFloor time.Duration
}

func (c Config) withDefaults() Config {
	if c.Initial <= 0 {
		c.Initial = DefaultInitial
	}
	if c.Max <= 0 {
		c.Max = DefaultMax
	}
	c.Initial = min(c.Initial, c.Max)
	if c.NearBaseline <= 1 {
		c.NearBaseline = DefaultNearBaseline
	}
	if c.Tolerance < c.NearBaseline {
		c.Tolerance = max(DefaultTolerance, c.NearBaseline)
	}
	if c.BaselineWindow <= 0 {
		c.BaselineWindow = DefaultBaselineWindow
	}
	if c.NoiseFloor <= 0 {
		c.NoiseFloor = DefaultNoiseFloor
	}
	return c
}

// Sample is one measured cut, with what the gate knew when its freeze was
// admitted.
type Sample struct {
	// Cut is the storage's share of the freeze (events.Snapshotted.CutDuration).
	Cut time.Duration
	// AdmittedAt is when the freeze was admitted.
	AdmittedAt time.Time
	// Crowded says the gate was at least half full when the freeze was
	// admitted: only then does a quick cut show that a higher limit would
	// be used.
	Crowded bool
}

// baselineBuckets is how many pieces the baseline window is kept in: the
// shortest cut of each piece, so that memory stays constant and a short
// cut leaves the window at most a piece late.
const baselineBuckets = 4

type bucket struct {
	start time.Time
	min   time.Duration
}

// Limit is the adaptive limit of one storage: how many freezes may be in
// flight on it. Not safe for concurrent use (the Gate guards it).
type Limit struct {
	cfg   Config
	limit float64
	// probing: no cut has been too long yet, so the limit grows by one per
	// quick cut (doubling per generation) to find the storage's size fast.
	probing      bool
	lastDecrease time.Time
	buckets      [baselineBuckets]bucket
}

// NewLimit returns a limit at cfg.Initial.
func NewLimit(cfg Config) *Limit {
	cfg = cfg.withDefaults()
	return &Limit{cfg: cfg, limit: float64(cfg.Initial), probing: true}
}

// Current is how many freezes may be in flight now, at least one.
func (l *Limit) Current() int { return max(1, int(math.Floor(l.limit))) }

// Baseline is the shortest cut seen within the window before now; 0 when
// none was.
func (l *Limit) Baseline(now time.Time) time.Duration {
	var b time.Duration
	for _, k := range l.buckets {
		if k.start.IsZero() || now.Sub(k.start) >= l.cfg.BaselineWindow {
			continue
		}
		if b == 0 || k.min < b {
			b = k.min
		}
	}
	return b
}

// Observe adapts the limit to one measured cut at now. A cut of zero (no
// measurement) is ignored.
func (l *Limit) Observe(s Sample, now time.Time) {
	if s.Cut <= 0 {
		return
	}
	l.remember(s.Cut, now)
	base := max(l.Baseline(now), l.cfg.NoiseFloor)
	ratio := float64(s.Cut) / float64(base)
	switch {
	case ratio > l.cfg.Tolerance:
		if !s.AdmittedAt.After(l.lastDecrease) {
			return // admitted under the limit already shrunk for: no news
		}
		// The longer the cut, the deeper the cut in the limit: by a
		// tenth just past the tolerance, by half at most. Gentle, because
		// a freeze in flight is not always cutting: a storage kept busy
		// needs more freezes in flight than cuts it runs at once.
		factor := min(0.9, max(0.5, l.cfg.Tolerance/ratio))
		l.limit = max(1, l.limit*factor)
		l.lastDecrease, l.probing = now, false
	case ratio <= l.cfg.NearBaseline && s.Crowded:
		if l.probing {
			l.limit++
		} else {
			l.limit += 1 / l.limit
		}
		l.limit = min(l.limit, float64(l.cfg.Max))
	}
}

// remember keeps cut in the bucket of now, starting a new bucket (over the
// oldest) when the current one is a piece of the window old.
func (l *Limit) remember(cut time.Duration, now time.Time) {
	piece := l.cfg.BaselineWindow / baselineBuckets
	newest, oldest := 0, 0
	for i, k := range l.buckets {
		if k.start.After(l.buckets[newest].start) {
			newest = i
		}
		if k.start.Before(l.buckets[oldest].start) {
			oldest = i
		}
	}
	if k := &l.buckets[newest]; !k.start.IsZero() && now.Sub(k.start) < piece {
		k.min = min(k.min, cut)
		return
	}
	l.buckets[oldest] = bucket{start: now, min: cut}
}
