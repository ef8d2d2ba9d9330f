package lease_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

func TestAcquire(t *testing.T) {
	_, s := newStore(t)
	ctx := t.Context()
	w := workload("redis")

	h := acquire(t, s, newLease("b-1", w, "hooker-1", 5*time.Minute))
	got, rev, err := s.Get(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if rev != h.Revision() || got != h.Lease() {
		t.Fatalf("Get = %+v rev %d, hold has %+v rev %d", got, rev, h.Lease(), h.Revision())
	}
	if got.State != lease.StateFreezing || got.Holder != "hooker-1" || got.MaxFreeze().Round(time.Second) != 5*time.Minute {
		t.Fatalf("stored lease %+v", got)
	}

	t.Run("same backup and holder is idempotent, keeping the deadline", func(t *testing.T) {
		again, err := s.Acquire(ctx, newLease("b-1", w, "hooker-1", time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if again.Revision() != h.Revision() || !again.Lease().Deadline.Equal(h.Lease().Deadline) {
			t.Fatalf("re-acquire gave rev %d deadline %s, want rev %d deadline %s",
				again.Revision(), again.Lease().Deadline, h.Revision(), h.Lease().Deadline)
		}
	})

	t.Run("another backup is refused with who holds it", func(t *testing.T) {
		_, err := s.Acquire(ctx, newLease("b-2", w, "hooker-2", time.Minute))
		var he *lease.HeldError
		if !errors.Is(err, lease.ErrHeld) || !errors.As(err, &he) {
			t.Fatalf("err = %v, want a HeldError", err)
		}
		if he.Lease.BackupID != "b-1" || he.Revision != h.Revision() {
			t.Fatalf("HeldError names %s rev %d", he.Lease.BackupID, he.Revision)
		}
		l := h.Lease()
		want := "deployment/redis -n shop (cluster prod) is frozen by backup b-1 (replica hooker-1, freezing) since " +
			l.AcquiredAt.Format(time.RFC3339) + ", until " + l.Deadline.Format(time.RFC3339) + " at the latest"
		if err.Error() != want {
			t.Fatalf("message:\n got %q\nwant %q", err, want)
		}
	})

	t.Run("same backup on another replica is refused", func(t *testing.T) {
		_, err := s.Acquire(ctx, newLease("b-1", w, "hooker-2", time.Minute))
		if !errors.Is(err, lease.ErrHeld) || !strings.Contains(err.Error(), "backup b-1 already holds the freeze of deployment/redis -n shop (cluster prod) on replica hooker-1") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("every spelling of a kind is one lease", func(t *testing.T) {
		w2 := w
		w2.Kind = "deploy"
		if _, err := s.Acquire(ctx, newLease("b-3", w2, "hooker-1", time.Minute)); !errors.Is(err, lease.ErrHeld) {
			t.Fatalf("err = %v, want ErrHeld", err)
		}
	})

	t.Run("other workloads are independent", func(t *testing.T) {
		acquire(t, s, newLease("b-4", workload("mariadb"), "hooker-2", time.Minute))
	})

	t.Run("invalid input is refused before any write", func(t *testing.T) {
		for name, l := range map[string]lease.Lease{
			"no holder":     {BackupID: "b-5", Workload: workload("x"), Deadline: time.Now().Add(time.Minute)},
			"no deadline":   {BackupID: "b-5", Workload: workload("x"), Holder: "h"},
			"bad backup id": {BackupID: "b 5", Workload: workload("x"), Holder: "h", Deadline: time.Now().Add(time.Minute)},
			"bad workload":  {BackupID: "b-5", Workload: workload("X.."), Holder: "h", Deadline: time.Now().Add(time.Minute)},
		} {
			if _, err := s.Acquire(ctx, l); err == nil {
				t.Errorf("%s: acquired", name)
			}
		}
		if _, _, err := s.Get(ctx, workload("x")); !errors.Is(err, lease.ErrNotHeld) {
			t.Fatalf("Get after refused acquires: %v", err)
		}
	})
}

func TestRenewAndState(t *testing.T) {
	_, s := newStore(t)
	ctx := t.Context()
	w := workload("redis")
	h := acquire(t, s, newLease("b-1", w, "hooker-1", time.Minute))
	first := h.Lease()

	if err := h.SetState(ctx, lease.StateFrozen); err != nil {
		t.Fatal(err)
	}
	rev := h.Revision()
	if err := h.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	got, gotRev, err := s.Get(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if gotRev <= rev || gotRev != h.Revision() {
		t.Fatalf("revision after renew %d (hold %d), before %d", gotRev, h.Revision(), rev)
	}
	if got.State != lease.StateFrozen || !got.Deadline.Equal(first.Deadline) || !got.AcquiredAt.Equal(first.AcquiredAt) || !got.RenewedAt.After(first.RenewedAt) {
		t.Fatalf("after renew: %+v, first %+v", got, first)
	}
	// Each write vouches for half the stale period past its renewal.
	if want := got.RenewedAt.Add(testCfg.StaleAfter / 2); !got.ValidUntil.Equal(want) || !h.ValidUntil().Equal(want) {
		t.Fatalf("valid until %v (hold %v), want %v", got.ValidUntil, h.ValidUntil(), want)
	}
	if err := h.SetState(ctx, "thawed"); err == nil {
		t.Fatal("unknown state accepted")
	}
}

// A record never vouches for a freeze past its cap.
func TestValidUntilStopsAtTheDeadline(t *testing.T) {
	_, s := newStore(t)
	w := workload("redis")
	h := acquire(t, s, newLease("b-1", w, "hooker-1", 100*time.Millisecond))
	if err := h.Renew(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.Get(t.Context(), w)
	if err != nil {
		t.Fatal(err)
	}
	if !got.ValidUntil.Equal(got.Deadline) {
		t.Fatalf("valid until %v, want the deadline %v (renewed at %v)", got.ValidUntil, got.Deadline, got.RenewedAt)
	}
}

func TestLostAfterRelease(t *testing.T) {
	_, s := newStore(t)
	ctx := t.Context()
	w := workload("redis")
	h := acquire(t, s, newLease("b-1", w, "hooker-1", time.Minute))

	if err := s.Release(ctx, w, "b-1"); err != nil {
		t.Fatal(err)
	}
	if err := h.Renew(ctx); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("renew after release: %v, want ErrLost", err)
	}
	if err := h.SetState(ctx, lease.StateFrozen); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("set state after release: %v, want ErrLost", err)
	}
	// The workload is free again, and the old hold cannot write over the new lease.
	acquire(t, s, newLease("b-2", w, "hooker-2", time.Minute))
	if err := h.Renew(ctx); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("stale hold renewed over another backup: %v", err)
	}
	if err := h.Release(ctx); err != nil {
		t.Fatalf("releasing a lost hold: %v", err)
	}
	if got, _, err := s.Get(ctx, w); err != nil || got.BackupID != "b-2" {
		t.Fatalf("lost hold's release touched the new lease: %+v %v", got, err)
	}
}

func TestTakeOver(t *testing.T) {
	_, s := newStore(t)
	ctx := t.Context()
	w := workload("redis")
	h := acquire(t, s, newLease("b-1", w, "hooker-1", time.Minute))

	h2, err := s.TakeOver(ctx, w, "b-1", "hooker-2")
	if err != nil {
		t.Fatal(err)
	}
	if l := h2.Lease(); l.Holder != "hooker-2" || l.State != lease.StateResuming || !l.Deadline.Equal(h.Lease().Deadline) {
		t.Fatalf("taken over lease %+v", l)
	}
	err = h.Renew(ctx)
	if !errors.Is(err, lease.ErrLost) || !strings.Contains(err.Error(), "now held by backup b-1 on replica hooker-2") {
		t.Fatalf("old holder renew: %v", err)
	}
	if _, err := s.TakeOver(ctx, w, "b-9", "hooker-2"); !errors.Is(err, lease.ErrNotHeld) {
		t.Fatalf("take over of another backup's lease: %v", err)
	}
	if err := h2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeOver(ctx, w, "b-1", "hooker-3"); !errors.Is(err, lease.ErrNotHeld) {
		t.Fatalf("take over of a released lease: %v", err)
	}
}

// A write that the server stored but whose reply was lost must not look like
// a lost lease on the next write.
func TestAdoptsOwnUnacknowledgedWrite(t *testing.T) {
	srv, s := newStore(t)
	ctx := t.Context()
	w := workload("redis")
	h := acquire(t, s, newLease("b-1", w, "hooker-1", time.Minute))

	// Replay what the hold would have written, behind its back.
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, lease.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, w.Key())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(ctx, w.Key(), e.Value(), e.Revision()); err != nil {
		t.Fatal(err)
	}
	if err := h.Renew(ctx); err != nil {
		t.Fatalf("renew after an unacknowledged write: %v", err)
	}
	if _, rev, _ := s.Get(ctx, w); rev != h.Revision() {
		t.Fatalf("hold at rev %d, store at %d", h.Revision(), rev)
	}
}

func TestRelease(t *testing.T) {
	_, s := newStore(t)
	ctx := t.Context()
	w := workload("redis")
	h := acquire(t, s, newLease("b-1", w, "hooker-1", time.Minute))

	if err := s.Release(ctx, w, "b-2"); err != nil {
		t.Fatalf("release by another backup: %v", err)
	}
	if got, _, err := s.Get(ctx, w); err != nil || got.BackupID != "b-1" {
		t.Fatalf("another backup's release removed the lease: %+v %v", got, err)
	}
	if err := h.Renew(ctx); err != nil { // the hold's revision moves
		t.Fatal(err)
	}
	for range 2 {
		if err := h.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Get(ctx, w); !errors.Is(err, lease.ErrNotHeld) {
		t.Fatalf("Get after release: %v", err)
	}
	if err := s.Release(ctx, w, "b-1"); err != nil {
		t.Fatalf("release of a lease already gone: %v", err)
	}
	if err := s.Release(ctx, workload("never-frozen"), "b-1"); err != nil {
		t.Fatalf("release of a lease that never was: %v", err)
	}
	// Released by backup id with a stale hold revision (renewed elsewhere).
	h2 := acquire(t, s, newLease("b-2", w, "hooker-1", time.Minute))
	h2b := acquire(t, s, newLease("b-2", w, "hooker-1", time.Minute)) // redelivered request
	if err := h2b.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h2.Release(ctx); err != nil {
		t.Fatalf("release with a stale revision: %v", err)
	}
	if _, _, err := s.Get(ctx, w); !errors.Is(err, lease.ErrNotHeld) {
		t.Fatalf("Get after release with a stale revision: %v", err)
	}
}

func TestKeep(t *testing.T) {
	t.Run("renews until released", func(t *testing.T) {
		_, s := newStore(t)
		h := acquire(t, s, newLease("b-1", workload("redis"), "hooker-1", time.Minute))
		stop := keep(t, h)
		first := h.Revision()
		eventually(t, 5*time.Second, "three renewals", func() bool { return h.Revision() >= first+3 })
		if err := h.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := stop(); err != nil {
			t.Fatalf("Keep after release: %v", err)
		}
	})
	t.Run("returns ErrLost when released elsewhere", func(t *testing.T) {
		_, s := newStore(t)
		w := workload("redis")
		h := acquire(t, s, newLease("b-1", w, "hooker-1", time.Minute))
		done := make(chan error, 1)
		go func() { done <- h.Keep(t.Context()) }()
		if err := s.Release(t.Context(), w, "b-1"); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, lease.ErrLost) {
				t.Fatalf("Keep: %v, want ErrLost", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Keep did not notice the release within 5s")
		}
	})
	t.Run("returns ErrStalled when NATS is gone", func(t *testing.T) {
		srv := eventstest.NewServer(t)
		nc := srv.Connect()
		s := openStore(t, nc, testCfg)
		h := acquire(t, s, newLease("b-1", workload("redis"), "hooker-1", time.Minute))
		done := make(chan error, 1)
		go func() { done <- h.Keep(t.Context()) }()
		nc.Close()
		start := time.Now()
		select {
		case err := <-done:
			if !errors.Is(err, lease.ErrStalled) {
				t.Fatalf("Keep: %v, want ErrStalled", err)
			}
			// Half the stale period: before any watchdog may take over.
			if el := time.Since(start); el < testCfg.StaleAfter/2-testCfg.RenewEvery {
				t.Fatalf("gave up after %s, before half of StaleAfter %s", el, testCfg.StaleAfter)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Keep did not give up within 10s")
		}
	})
}

func TestConcurrentAcquire(t *testing.T) {
	_, s := newStore(t)
	testConcurrentAcquire(t, s)
}

// testConcurrentAcquire races goroutines for one workload, several rounds,
// the later ones over the delete marker a release leaves.
func testConcurrentAcquire(t *testing.T, s *lease.Store) {
	ctx := t.Context()
	w := workload("redis")
	const racers = 8
	for round := range 5 {
		var (
			wg    sync.WaitGroup
			holds [racers]*lease.Hold
			errs  [racers]error
		)
		for i := range racers {
			wg.Go(func() {
				holds[i], errs[i] = s.Acquire(ctx, newLease(backupID(round*racers+i), w, "hooker", time.Minute))
			})
		}
		wg.Wait()
		var winner *lease.Hold
		for i := range racers {
			switch {
			case errs[i] == nil && winner == nil:
				winner = holds[i]
			case errs[i] == nil:
				t.Fatalf("round %d: two winners, %s and %s", round, winner.Lease().BackupID, holds[i].Lease().BackupID)
			}
		}
		if winner == nil {
			t.Fatalf("round %d: no winner: %v", round, errs)
		}
		for i, err := range errs {
			var he *lease.HeldError
			if err != nil && (!errors.As(err, &he) || he.Lease.BackupID != winner.Lease().BackupID) {
				t.Fatalf("round %d racer %d: %v, want HeldError naming %s", round, i, err, winner.Lease().BackupID)
			}
		}
		if err := winner.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestList(t *testing.T) {
	_, s := newStore(t)
	ctx := t.Context()
	got, err := s.List(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("empty bucket: %v %v", got, err)
	}
	startWatchdog(t, s, lease.WatchdogConfig{}, &recorder{}) // writes its heartbeat key
	acquire(t, s, newLease("b-1", workload("a"), "hooker-1", time.Minute))
	h := acquire(t, s, newLease("b-2", workload("b"), "hooker-1", time.Minute))
	acquire(t, s, newLease("b-3", workload("c"), "hooker-2", time.Minute))
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	got, err = s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, l := range got {
		ids[l.BackupID] = true
	}
	if len(got) != 2 || !ids["b-1"] || !ids["b-3"] {
		t.Fatalf("List = %+v, want b-1 and b-3", got)
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	_, s := newStore(b)
	ctx := context.Background()
	w := workload("redis")
	i := 0
	for b.Loop() {
		i++
		h, err := s.Acquire(ctx, newLease(backupID(i%10000), w, "hooker-1", time.Minute))
		if err != nil {
			b.Fatal(err)
		}
		if err := h.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// A backup whose freeze ended is never frozen again, also once its lease is
// gone; the end recorded first stays.
func TestEndedBackupIsNeverAcquiredAgain(t *testing.T) {
	_, s := newStore(t)
	ctx := t.Context()
	w := workload("redis")
	h := acquire(t, s, newLease("b-1", w, "hooker-1", time.Minute))
	if h.Epoch() == 0 || h.Epoch() != h.Revision() {
		t.Fatalf("epoch %d, want the creating revision %d", h.Epoch(), h.Revision())
	}
	if err := h.SetState(ctx, lease.StateFrozen); err != nil {
		t.Fatal(err)
	}
	if got, _, err := s.Get(ctx, w); err != nil || got.Epoch != h.Epoch() {
		t.Fatalf("stored lease %+v %v: want epoch %d", got, err, h.Epoch())
	}
	if err := h.SetState(ctx, lease.StateFreezing); err == nil {
		t.Fatal("frozen → freezing was allowed")
	}
	if err := h.End(ctx, events.FreezeEnd{Succeeded: true, Reason: events.ResumeAfterSnapshot, Resumed: true}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, w); !errors.Is(err, lease.ErrNotHeld) {
		t.Fatalf("lease after End: %v", err)
	}
	_, err := s.Acquire(ctx, newLease("b-1", w, "hooker-2", time.Minute))
	var ended *lease.EndedError
	if !errors.As(err, &ended) || !ended.End.Succeeded || ended.End.Epoch != h.Epoch() {
		t.Fatalf("Acquire of an ended backup = %v, want an EndedError with its end", err)
	}
	if _, _, err := s.Get(ctx, w); !errors.Is(err, lease.ErrNotHeld) {
		t.Fatalf("a refused Acquire left a lease: %v", err)
	}
	// Another backup of the workload, and the same id on another workload, go on.
	acquire(t, s, newLease("b-2", w, "hooker-1", time.Minute))
	acquire(t, s, newLease("b-1", workload("cache"), "hooker-1", time.Minute))
	if err := s.End(ctx, events.FreezeEnd{BackupID: "b-1", Workload: w, Reason: "second"}); err != nil {
		t.Fatal(err)
	}
	if end, err := s.Ended(ctx, events.BackupRef{BackupID: "b-1", Workload: w}); err != nil || end.Reason != events.ResumeAfterSnapshot {
		t.Fatalf("end after a second End: %+v %v, want the first kept", end, err)
	}
}
