package lease_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

// startCluster runs three JetStream nodes on loopback, shut down with the test.
func startCluster(t *testing.T) []*server.Server { return eventstest.NewCluster(t, 3) }

// On a replicated bucket a lost compare-and-set carries error code 10164,
// not the 10071 that jetstream.ErrKeyExists matches.
func TestReplicatedBucket(t *testing.T) {
	nodes := startCluster(t)
	nc, err := nats.Connect(nodes[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	eventstest.ClusterStream(t, js) // the buckets at R3
	s, err := lease.Open(t.Context(), js, testCfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	w := workload("redis")

	testConcurrentAcquire(t, s) // includes Create over a delete marker

	h := acquire(t, s, newLease("b-1", w, "hooker-1", time.Minute))
	if _, err := s.Acquire(ctx, newLease("b-2", w, "hooker-2", time.Minute)); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("second backup: %v, want ErrHeld", err)
	}
	if err := s.Release(ctx, w, "b-1"); err != nil {
		t.Fatal(err)
	}
	if err := h.Renew(ctx); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("renew after release: %v, want ErrLost", err)
	}

	rec := &recorder{}
	startWatchdog(t, s, lease.WatchdogConfig{Tick: tick, RefireAfter: time.Minute}, rec)
	acquire(t, s, newLease("b-3", w, "hooker-1", 500*time.Millisecond))
	eventually(t, 5*time.Second, "unlock request on the replicated bucket", func() bool { return len(rec.forBackup("b-3")) == 1 })
}
