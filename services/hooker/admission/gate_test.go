package admission

import (
	"context"
	"errors"
	"testing"
	"time"
)

func admitted(g *Gate, key string) (inFlight, waiting int) {
	for _, s := range g.Stats() {
		if s.Key == key {
			return s.InFlight, s.Waiting
		}
	}
	return 0, 0
}

// admitLater calls Admit in the background once the previous callers are
// queued, so that the order of calls is the order of the queue.
func admitLater(t *testing.T, ctx context.Context, g *Gate, key string) <-chan *Slot {
	t.Helper()
	ch := make(chan *Slot, 1)
	in, w := admitted(g, key)
	go func() {
		s, err := g.Admit(ctx, key)
		if err != nil {
			close(ch)
			return
		}
		ch <- s
	}()
	waitFor(t, func() bool { i, w2 := admitted(g, key); return i+w2 == in+w+1 })
	return ch
}

func TestGateAdmitsUpToTheLimitFirstComeFirstServed(t *testing.T) {
	g := NewGate(Config{Initial: 2, Max: 2}, nil)
	ctx := t.Context()
	a, err := g.Admit(ctx, "fast")
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.Admit(ctx, "fast")
	if err != nil {
		t.Fatal(err)
	}
	var queued []<-chan *Slot
	for range 3 {
		queued = append(queued, admitLater(t, ctx, g, "fast"))
	}
	if in, w := admitted(g, "fast"); in != 2 || w != 3 {
		t.Fatalf("in flight %d, waiting %d; want 2 and 3", in, w)
	}
	// Another storage has its own room.
	if _, err := g.Admit(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	a.Release()
	a.Release() // once only: a second release frees nothing
	first := <-queued[0]
	if in, w := admitted(g, "fast"); in != 2 || w != 2 {
		t.Fatalf("after one release (twice): in flight %d, waiting %d; want 2 and 2", in, w)
	}
	select {
	case <-queued[1]:
		t.Fatal("the second in the queue was admitted before a second slot was free")
	default:
	}
	b.Release()
	second := <-queued[1]
	first.Release()
	third := <-queued[2]
	for i, s := range []*Slot{first, second, third} {
		if s == nil {
			t.Fatalf("waiter %d not admitted", i)
		}
	}
	second.Release()
	third.Release()
	if in, w := admitted(g, "fast"); in != 0 || w != 0 {
		t.Fatalf("all released: in flight %d, waiting %d", in, w)
	}
}

func TestGateWaiterLeavesWhenItsContextEnds(t *testing.T) {
	g := NewGate(Config{Initial: 1, Max: 1}, nil)
	held, err := g.Admit(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	gone := admitLater(t, ctx, g, "k")
	next := admitLater(t, t.Context(), g, "k")
	cancel()
	if s, ok := <-gone; ok || s != nil {
		t.Fatal("a waiter whose context ended was admitted")
	}
	waitFor(t, func() bool { _, w := admitted(g, "k"); return w == 1 })
	held.Release()
	if s := <-next; s == nil || s.Waited() < 0 {
		t.Fatal("the waiter behind a cancelled one was not admitted")
	}
	if _, err := g.Admit(ctxDone(), "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Admit with an ended context = %v, want context.Canceled", err)
	}
}

func ctxDone() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestGateCountsOnlyTheFirstCutOfASlot(t *testing.T) {
	now := t0
	g := NewGate(Config{Initial: 2, Max: 8}, func() time.Time { return now })
	a, _ := g.Admit(t.Context(), "k")
	b, _ := g.Admit(t.Context(), "k") // half full: crowded
	b.Observe(60 * ms)
	b.Observe(60 * ms) // a trigger delivered twice
	b.Observe(0)
	if s := g.Stats()[0]; s.Limit != 3 || s.Baseline != 60*ms {
		t.Fatalf("stats %+v; want limit 3 (one quick cut) and baseline 60ms", s)
	}
	var nilSlot *Slot
	nilSlot.Observe(time.Second)
	nilSlot.Release()
	a.Release()
	b.Release()
}

func TestDisabledGateAdmitsEveryoneAndCounts(t *testing.T) {
	g := NewGate(Config{Disabled: true, Initial: 1}, nil)
	var slots []*Slot
	for range 10 {
		s, err := g.Admit(t.Context(), "k")
		if err != nil {
			t.Fatal(err)
		}
		slots = append(slots, s)
	}
	if s := g.Stats()[0]; s.InFlight != 10 || s.Waiting != 0 || s.Limit != 0 {
		t.Fatalf("stats %+v; want 10 in flight, none waiting, no limit", s)
	}
	for _, s := range slots {
		s.Release()
	}
}

// Admitting a waiter when the limit grows (a quick cut) as well as when a
// slot is released.
func TestGateAdmitsWhenTheLimitGrows(t *testing.T) {
	g := NewGate(Config{Initial: 1, Max: 4}, nil)
	a, _ := g.Admit(t.Context(), "k")
	next := admitLater(t, t.Context(), g, "k")
	a.Observe(50 * ms) // alone, but full: crowded; limit 2
	s := <-next
	if s == nil {
		t.Fatal("not admitted when the limit grew")
	}
	a.Release()
	s.Release()
}

func TestClosedGateAdmitsNoOne(t *testing.T) {
	g := NewGate(Config{Initial: 1, Max: 1}, nil)
	held, err := g.Admit(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	waiting := admitLater(t, t.Context(), g, "k")
	g.Close()
	g.Close()
	if s, ok := <-waiting; ok || s != nil {
		t.Fatal("a waiter was admitted by a closed gate")
	}
	if _, err := g.Admit(t.Context(), "other"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Admit on a closed gate = %v, want ErrClosed", err)
	}
	held.Release()
	if in, w := admitted(g, "k"); in != 0 || w != 0 {
		t.Fatalf("in flight %d, waiting %d after close and release", in, w)
	}
}
