package lease_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

// testCfg renews fast so that staleness shows within a second.
var testCfg = lease.Config{RenewEvery: 100 * time.Millisecond, StaleAfter: time.Second}

func openStore(t testing.TB, nc *nats.Conn, cfg lease.Config) *lease.Store {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := lease.Open(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newStore starts a server and opens a store on a fresh connection.
func newStore(t testing.TB) (*eventstest.Server, *lease.Store) {
	t.Helper()
	srv := eventstest.NewServer(t)
	return srv, openStore(t, srv.Connect(), testCfg)
}

func workload(name string) events.Workload {
	return events.Workload{Cluster: "prod", Namespace: "shop", Kind: events.KindDeployment, Name: name}
}

// newLease is a lease with a cap of exactly maxFreeze: AcquiredAt is set, not left to
// Acquire's clock a moment later.
func newLease(backupID string, w events.Workload, holder string, maxFreeze time.Duration) lease.Lease {
	now := time.Now().UTC().Round(0)
	return lease.Lease{BackupID: backupID, Workload: w, Holder: holder, AcquiredAt: now, Deadline: now.Add(maxFreeze)}
}

func acquire(t testing.TB, s *lease.Store, l lease.Lease) *lease.Hold {
	t.Helper()
	h, err := s.Acquire(t.Context(), l)
	if err != nil {
		t.Fatalf("acquire %s: %v", l.BackupID, err)
	}
	return h
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	eventstest.Eventually(t, timeout, what, cond)
}

// recorder is an onStale callback that records its calls.
type recorder struct {
	mu    sync.Mutex
	calls []call
	fail  func(lease.Stale) error // optional result
	block chan struct{}           // when set, calls wait on it or on ctx
	ctxs  []context.Context
}

type call struct {
	at time.Time
	st lease.Stale
}

func (r *recorder) onStale(ctx context.Context, st lease.Stale) error {
	r.mu.Lock()
	r.calls = append(r.calls, call{at: time.Now(), st: st})
	r.ctxs = append(r.ctxs, ctx)
	fail, block := r.fail, r.block
	r.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		return fail(st)
	}
	return nil
}

func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

func (r *recorder) forBackup(id string) []call {
	var out []call
	for _, c := range r.snapshot() {
		if c.st.Lease.BackupID == id {
			out = append(out, c)
		}
	}
	return out
}

// startWatchdog runs a watchdog until the test ends and checks it stopped cleanly.
func startWatchdog(t *testing.T, s *lease.Store, cfg lease.WatchdogConfig, rec *recorder) {
	t.Helper()
	if cfg.Tick == 0 {
		cfg.Tick = 50 * time.Millisecond
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	w := lease.NewWatchdog(s, cfg, rec.onStale, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("watchdog Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("watchdog did not stop within 10s")
		}
	})
}

// keep renews h in the background until the returned stop is called.
func keep(t *testing.T, h *lease.Hold) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Keep(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func backupID(i int) string { return fmt.Sprintf("b-%04d", i) }
