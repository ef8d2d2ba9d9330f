package lease_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/embedded"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

const tick = 50 * time.Millisecond

func TestWatchdogFiresAtDeadline(t *testing.T) {
	_, s := newStore(t)
	rec := &recorder{}
	startWatchdog(t, s, lease.WatchdogConfig{Tick: tick, RefireAfter: time.Minute}, rec)

	h := acquire(t, s, newLease("b-1", workload("redis"), "hooker-1", 1500*time.Millisecond))
	keep(t, h) // renewed all along: only the cap can make it stale
	deadline := h.Lease().Deadline

	eventually(t, 5*time.Second, "unlock request at the deadline", func() bool { return len(rec.snapshot()) > 0 })
	c := rec.snapshot()[0]
	if late := c.at.Sub(deadline); late < 0 || late > tick+300*time.Millisecond {
		t.Fatalf("fired %s after the deadline, want within tick+300ms", late)
	}
	if c.st.Cause != lease.CauseDeadline || c.st.Lease.BackupID != "b-1" || c.st.Attempt != 1 {
		t.Fatalf("stale = %+v", c.st)
	}
	if want := "frozen past its 1.5s cap (deadline "; !strings.HasPrefix(c.st.Reason, want) {
		t.Fatalf("reason %q, want prefix %q", c.st.Reason, want)
	}
}

func TestWatchdogFiresWhenRenewalsStop(t *testing.T) {
	_, s := newStore(t)
	rec := &recorder{}
	startWatchdog(t, s, lease.WatchdogConfig{Tick: tick, RefireAfter: time.Minute}, rec)

	h := acquire(t, s, newLease("b-1", workload("redis"), "hooker-1", time.Hour))
	stop := keep(t, h)
	// Renewed for twice StaleAfter: no call.
	eventstest.Consistently(t, 2*testCfg.StaleAfter, "no call for a renewed lease", func() bool { return len(rec.snapshot()) == 0 })
	if got := rec.snapshot(); len(got) != 0 {
		t.Fatalf("fired for a renewed lease: %+v", got[0].st)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	eventually(t, 5*time.Second, "unlock request after renewals stopped", func() bool { return len(rec.snapshot()) > 0 })
	c := rec.snapshot()[0]
	if after := c.at.Sub(stopped); after < testCfg.StaleAfter-testCfg.RenewEvery || after > testCfg.StaleAfter+time.Second {
		t.Fatalf("fired %s after the last renewal, want about StaleAfter (%s)", after, testCfg.StaleAfter)
	}
	if c.st.Cause != lease.CauseStopped || !strings.HasPrefix(c.st.Reason, "holder hooker-1 stopped renewing ") {
		t.Fatalf("stale = %+v", c.st)
	}
}

func TestWatchdogIgnoresReleasedLeases(t *testing.T) {
	_, s := newStore(t)
	ctx := t.Context()
	rec := &recorder{block: make(chan struct{})}
	startWatchdog(t, s, lease.WatchdogConfig{Tick: tick, RefireAfter: 200 * time.Millisecond}, rec)

	// Released before its deadline: never reported.
	h1 := acquire(t, s, newLease("b-1", workload("redis"), "hooker-1", 700*time.Millisecond))
	keep(t, h1)
	if err := h1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Stale, and released while the callback runs: the callback's context ends
	// and it is not called again.
	h2 := acquire(t, s, newLease("b-2", workload("mariadb"), "hooker-1", 500*time.Millisecond))
	eventually(t, 5*time.Second, "unlock request for b-2", func() bool { return len(rec.forBackup("b-2")) > 0 })
	if err := h2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	fctx := rec.ctxs[0]
	rec.mu.Unlock()
	select {
	case <-fctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("callback context not cancelled after the release")
	}
	// Past b-1's deadline and several RefireAfter: still no call.
	eventstest.Consistently(t, testCfg.StaleAfter+time.Second, "no call for a released lease", func() bool { return len(rec.forBackup("b-1")) == 0 })
	if got := rec.forBackup("b-1"); len(got) != 0 {
		t.Fatalf("fired for a released lease: %+v", got[0].st)
	}
	if got := rec.forBackup("b-2"); len(got) != 1 {
		t.Fatalf("b-2 reported %d times after its release, want once", len(got))
	}
}

func TestWatchdogRetriesFailedCallbacks(t *testing.T) {
	_, s := newStore(t)
	const refire = 400 * time.Millisecond
	rec := &recorder{fail: func(st lease.Stale) error {
		if st.Attempt == 1 {
			return errors.New("nats: timeout")
		}
		return nil
	}}
	startWatchdog(t, s, lease.WatchdogConfig{Tick: tick, RefireAfter: refire}, rec)
	acquire(t, s, newLease("b-1", workload("redis"), "hooker-1", 300*time.Millisecond))

	eventually(t, 5*time.Second, "a second call after the failure", func() bool { return len(rec.snapshot()) >= 2 })
	c := rec.snapshot()
	if gap := c[1].at.Sub(c[0].at); gap < refire-20*time.Millisecond || gap > refire+500*time.Millisecond {
		t.Fatalf("retried after %s, want RefireAfter (%s)", gap, refire)
	}
	if c[0].st.Attempt != 1 || c[1].st.Attempt != 2 {
		t.Fatalf("attempts %d, %d", c[0].st.Attempt, c[1].st.Attempt)
	}
}

// A watchdog that starts after a lease went stale (no hooker ran) finds it.
func TestWatchdogReconcilesOnStart(t *testing.T) {
	_, s := newStore(t)
	ctx := t.Context()
	past := newLease("b-1", workload("redis"), "hooker-1", 0)
	past.AcquiredAt = time.Now().Add(-10 * time.Minute)
	past.Deadline = past.AcquiredAt.Add(5 * time.Minute)
	acquire(t, s, past)
	acquire(t, s, newLease("b-2", workload("mariadb"), "hooker-1", time.Hour)) // holder died at once
	h := acquire(t, s, newLease("b-3", workload("postgres"), "hooker-2", time.Hour))
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}

	rec := &recorder{}
	started := time.Now()
	startWatchdog(t, s, lease.WatchdogConfig{Tick: tick, RefireAfter: time.Minute}, rec)

	eventually(t, 2*time.Second, "b-1, past its deadline", func() bool { return len(rec.forBackup("b-1")) == 1 })
	if c := rec.forBackup("b-1")[0]; c.st.Cause != lease.CauseDeadline || c.at.Sub(started) > time.Second {
		t.Fatalf("b-1: %+v after %s", c.st, c.at.Sub(started))
	}
	eventually(t, testCfg.StaleAfter+2*time.Second, "b-2, not renewed", func() bool { return len(rec.forBackup("b-2")) == 1 })
	if c := rec.forBackup("b-2")[0]; c.st.Cause != lease.CauseStopped {
		t.Fatalf("b-2: %+v", c.st)
	}
	if got := rec.forBackup("b-3"); len(got) != 0 {
		t.Fatalf("fired for a lease released before the start: %+v", got[0].st)
	}
}

func TestWatchdogManyLeases(t *testing.T) {
	srv := eventstest.NewServer(t)
	cfg := lease.Config{RenewEvery: 500 * time.Millisecond, StaleAfter: 3 * time.Second}
	s := openStore(t, srv.Connect(), cfg)
	const n = 1000
	holds := make([]*lease.Hold, n)
	for i := range holds {
		holds[i] = acquire(t, s, newLease(backupID(i), workload(backupID(i)), "hooker-1", time.Hour))
	}
	rec := &recorder{}
	startWatchdog(t, s, lease.WatchdogConfig{Tick: tick, RefireAfter: time.Minute}, rec)
	// One in ten keeps renewing; the others' holder died.
	renewed := func(i int) bool { return i%10 == 0 }
	for i := range n {
		if renewed(i) {
			keep(t, holds[i])
		}
	}
	eventually(t, cfg.StaleAfter+10*time.Second, "every unrenewed lease reported", func() bool { return len(rec.snapshot()) >= n-n/10 })
	// One more renewal period, in which nothing may be reported twice.
	eventstest.Consistently(t, cfg.RenewEvery, "no lease reported twice", func() bool {
		seen := map[string]int{}
		for _, c := range rec.snapshot() {
			if seen[c.st.Lease.BackupID]++; seen[c.st.Lease.BackupID] > 1 {
				return false
			}
		}
		return true
	})
	seen := map[string]int{}
	for _, c := range rec.snapshot() {
		seen[c.st.Lease.BackupID]++
	}
	for i := range n {
		want := 1
		if renewed(i) {
			want = 0
		}
		if seen[backupID(i)] != want {
			t.Fatalf("%s reported %d times, want %d", backupID(i), seen[backupID(i)], want)
		}
	}
}

// While the watchdog cannot see the bucket it cannot see renewals either: a
// NATS restart must not turn every healthy freeze into an unlock.
func TestWatchdogBlindDuringOutage(t *testing.T) {
	dir := t.TempDir()
	port := eventstest.FreePort(t)
	start := func() *embedded.Server {
		srv, err := embedded.Start(embedded.Options{StoreDir: dir, Port: port, ServerName: "outage"})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv := start()
	t.Cleanup(func() { srv.Shutdown() })
	connect := func() *nats.Conn {
		nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	// A roomier stale period than the other tests: after the restart the
	// holder must reconnect and renew within it, which a loaded 2-core CI
	// machine can take over a second to do.
	cfg := testCfg
	cfg.StaleAfter = 3 * time.Second
	adminJS, err := jetstream.New(connect())
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Setup(t.Context(), adminJS, events.SetupConfig{}, nil); err != nil {
		t.Fatal(err)
	}
	holder := openStore(t, connect(), cfg)
	watcher := openStore(t, connect(), cfg)
	rec := &recorder{}
	startWatchdog(t, watcher, lease.WatchdogConfig{Tick: tick, RefireAfter: time.Minute}, rec)

	h := acquire(t, holder, newLease("b-1", workload("redis"), "hooker-1", time.Hour))
	renewing := make(chan struct{})
	go func() { // like Keep, but rides out the outage
		defer close(renewing)
		for t.Context().Err() == nil {
			if err := h.Keep(t.Context()); errors.Is(err, lease.ErrLost) {
				return
			}
		}
	}()
	quiet := func() bool { return len(rec.snapshot()) == 0 }
	eventstest.Consistently(t, cfg.StaleAfter, "no call while renewed", quiet)

	srv.Shutdown()
	eventstest.Consistently(t, 3*cfg.StaleAfter, "no call during the outage", quiet)
	srv = start()
	eventstest.Consistently(t, 3*cfg.StaleAfter, "no call once reconnected and renewing", quiet)
	if got := rec.snapshot(); len(got) != 0 {
		t.Fatalf("fired for a lease renewed around an outage: %+v", got[0].st)
	}
	// The watchdog still works: a lease whose holder is gone is reported.
	acquire(t, holder, newLease("b-2", workload("mariadb"), "hooker-2", time.Hour))
	eventually(t, cfg.StaleAfter+5*time.Second, "b-2 reported after the outage", func() bool { return len(rec.forBackup("b-2")) == 1 })
	if got := rec.forBackup("b-1"); len(got) != 0 {
		t.Fatalf("fired for b-1: %+v", got[0].st)
	}
}
