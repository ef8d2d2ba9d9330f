package admission

import (
	"context"
	"flag"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var traceSimulation = flag.Bool("trace-simulation", false, "log the limit of the simulated gate at every change")

// storageModel is a storage that cuts snapshots side by side, sharing a
// throughput: a cut alone takes alone; n at once each progress at
// min(1/alone, perSecond/n) of a cut per second. It is the shape measured
// on the sandbox (61 ms alone, 50 at once in about 1.3 s).
type storageModel struct {
	alone     time.Duration
	perSecond float64
}

// freezeModel is what a freeze spends around its cut: the pre-hook (not
// frozen yet), from its end to the cut's start (Quiesced, the
// snapshotter's pick-up), from the cut to the post-hook (Snapshotted), and
// the post-hook.
type freezeModel struct {
	prehook, toCut, toResume, posthook time.Duration
	// jitter is added to prehook, from 0 to jitter, drawn from a fixed
	// seed: pre-hooks never take exactly as long as each other.
	jitter time.Duration
}

func (f freezeModel) pause(cut time.Duration) time.Duration {
	return f.toCut + cut + f.toResume + f.posthook
}

type simFreeze struct {
	slot                                 *Slot
	admitted, cutStart, cutEnd, released time.Time
	work                                 float64 // of one cut, done so far
	observed                             bool
	prehook                              time.Duration
	cutting, cut, done                   bool
}

// simulate runs n freezes requested at once through a gate (cfg) over the
// storage, in steps of one millisecond of simulated time, and returns each
// freeze's pause and when the last one ended.
func simulate(t *testing.T, cfg Config, n int, st storageModel, fm freezeModel) (pauses []time.Duration, makespan time.Duration) {
	t.Helper()
	now := t0
	gate := NewGate(cfg, func() time.Time { return now })
	ctx := context.Background()
	// Every request calls Admit in order; the gate answers through one
	// channel each, so the simulation knows who was admitted.
	admitted := make([]chan *Slot, n)
	for i := range n {
		admitted[i] = make(chan *Slot, 1)
		go func() {
			s, err := gate.Admit(ctx, "class")
			if err != nil {
				panic(err)
			}
			admitted[i] <- s
		}()
		waitFor(t, func() bool { s := gate.Stats(); return len(s) == 1 && s[0].InFlight+s[0].Waiting == i+1 })
	}
	fs := make([]simFreeze, n)
	rng := rand.New(rand.NewPCG(1, 2))
	next := 0
	collect := func() {
		inFlight := gate.Stats()[0].InFlight
		for running := countRunning(fs[:next]); running < inFlight; running++ {
			fs[next].slot = <-admitted[next]
			fs[next].admitted = now
			fs[next].prehook = fm.prehook + time.Duration(rng.Int64N(int64(fm.jitter)+1))
			next++
		}
	}
	collect()
	step := time.Millisecond
	active := []*simFreeze{} // admitted, not yet ended
	for i := range fs[:next] {
		active = append(active, &fs[i])
	}
	for ended := 0; ended < n; {
		now = now.Add(step)
		cutting := 0
		for _, f := range active {
			if f.cutting {
				cutting++
			}
		}
		rate := math.Min(1/st.alone.Seconds(), st.perSecond/math.Max(1, float64(cutting))) * step.Seconds()
		changed := false
		for _, f := range active {
			switch {
			case !f.cutting && !f.cut && now.Sub(f.admitted) >= f.prehook+fm.toCut:
				f.cutting, f.cutStart = true, now
			case f.cutting:
				if f.work += rate; f.work >= 1-1e-9 {
					f.cutting, f.cut, f.cutEnd = false, true, now
				}
			case f.cut && !f.observed && now.Sub(f.cutEnd) >= fm.toResume:
				f.observed = true
				f.slot.Observe(f.cutEnd.Sub(f.cutStart))
				changed = true
			case f.cut && now.Sub(f.cutEnd) >= fm.toResume+fm.posthook:
				f.done = true
				f.slot.Release()
				ended++
				changed = true
				pauses = append(pauses, fm.pause(f.cutEnd.Sub(f.cutStart)))
			}
		}
		if !changed {
			continue
		}
		active = slices.DeleteFunc(active, func(f *simFreeze) bool { return f.done })
		from := next
		collect()
		for i := from; i < next; i++ {
			active = append(active, &fs[i])
		}
		if *traceSimulation {
			s := gate.Stats()[0]
			t.Logf("t=%v limit %d in flight %d cutting %d baseline %v", now.Sub(t0), s.Limit, s.InFlight, cutting, s.Baseline)
		}
	}
	return pauses, now.Sub(t0)
}

func countRunning(fs []simFreeze) int {
	n := 0
	for _, f := range fs {
		if !f.done {
			n++
		}
	}
	return n
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1)]
}

// The targets of issue 16, on a model of the sandbox's storage: at 50 and
// 500 freezes at once, each application's pause p99 within twice its pause
// alone, and the batch within 1.2x the storage's throughput bound. Without
// the gate (the control), the pauses are the whole queue.
func TestSimulatedBurstMeetsTheTargets(t *testing.T) {
	st := storageModel{alone: 61 * time.Millisecond, perSecond: 38}
	fm := freezeModel{prehook: 10 * time.Millisecond, jitter: 20 * time.Millisecond, toCut: 20 * time.Millisecond, toResume: 10 * time.Millisecond, posthook: 15 * time.Millisecond}
	alone := fm.pause(st.alone)
	for _, n := range []int{50, 500} {
		pauses, makespan := simulate(t, Config{}, n, st, fm)
		bound := time.Duration(float64(n) / st.perSecond * float64(time.Second))
		p99 := percentile(pauses, 0.99)
		t.Logf("%d at once: pause p50 %v p99 %v (alone %v); batch %v, storage bound %v (%.2fx)", n, percentile(pauses, 0.5), p99, alone, makespan, bound,
			float64(makespan)/float64(bound))
		if p99 > 2*alone {
			t.Errorf("%d at once: pause p99 %v, want at most twice alone (%v)", n, p99, 2*alone)
		}
		if float64(makespan) > 1.2*float64(bound) {
			t.Errorf("%d at once: batch took %v, want within 1.2x the storage's bound %v", n, makespan, bound)
		}
		// The control: without admission every application is frozen for
		// the whole queue.
		openPauses, _ := simulate(t, Config{Disabled: true}, n, st, fm)
		if p := percentile(openPauses, 0.99); p <= 2*alone {
			t.Errorf("%d at once without admission: pause p99 %v; the model does not queue, so it shows nothing", n, p)
		} else {
			t.Logf("%d at once without admission: pause p99 %v", n, p)
		}
	}
}
