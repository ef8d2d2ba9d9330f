package lease_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

// The snapshotter's progress reports on frozen workloads: a report that goes
// silent, or none at all, makes the lease stale long before its cap; a
// report deleted (the snapshotter answered) does not.
func TestWatchdogResumesWhenTheSnapshotStalls(t *testing.T) {
	srv, s := newStore(t)
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), events.FreezesBucket)
	if err != nil {
		t.Fatal(err)
	}
	const stall = 800 * time.Millisecond
	rec := &recorder{}
	startWatchdog(t, s, lease.WatchdogConfig{Tick: tick, RefireAfter: time.Minute, SnapshotStallAfter: stall}, rec)

	frozen := func(id, name string) events.Workload {
		w := workload(name)
		h := acquire(t, s, newLease(id, w, "hooker-1", time.Hour))
		keep(t, h) // a live holder: only the snapshot can stall
		if err := h.SetState(t.Context(), lease.StateFrozen); err != nil {
			t.Fatal(err)
		}
		return w
	}
	report := func(w events.Workload, id string) {
		key, err := events.SnapshotProgressKey(w)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := json.Marshal(events.SnapshotProgress{BackupID: id, Replica: "snapshotter-0", RenewedAt: time.Now()})
		if _, err := kv.Put(t.Context(), key, v); err != nil {
			t.Fatal(err)
		}
	}

	stalls, done, never := frozen("b-stalls", "redis"), frozen("b-done", "postgres"), frozen("b-never", "mongo")
	var reporting sync.WaitGroup
	stopReporting := make(chan struct{})
	reporting.Go(func() {
		for {
			report(stalls, "b-stalls")
			report(done, "b-done")
			select {
			case <-stopReporting:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})

	// No snapshotter ever reported on mongo: stale after the stall time.
	eventually(t, 5*time.Second, "mongo reported stalled", func() bool { return len(rec.forBackup("b-never")) > 0 })
	c := rec.forBackup("b-never")[0]
	if c.st.Cause != lease.CauseSnapshotStalled || c.st.Lease.Workload.Name != never.Name || !strings.HasPrefix(c.st.Reason, "no snapshotter reported progress") {
		t.Fatalf("stale = %+v", c.st)
	}
	// While reports come, nothing else is stale.
	eventstest.Consistently(t, 2*stall, "no stall while the snapshotter reports", func() bool {
		return len(rec.forBackup("b-stalls"))+len(rec.forBackup("b-done")) == 0
	})

	close(stopReporting)
	reporting.Wait()
	key, _ := events.SnapshotProgressKey(done)
	if err := kv.Delete(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	silent := time.Now()
	eventually(t, 5*time.Second, "redis reported stalled", func() bool { return len(rec.forBackup("b-stalls")) > 0 })
	c = rec.forBackup("b-stalls")[0]
	if after := c.at.Sub(silent); after < stall-200*time.Millisecond || c.st.Cause != lease.CauseSnapshotStalled || !strings.HasPrefix(c.st.Reason, "the snapshotter stopped reporting progress") {
		t.Fatalf("stale %s after the last report: %+v", after, c.st)
	}
	eventstest.Consistently(t, 2*stall, "no stall once the snapshotter is done", func() bool { return len(rec.forBackup("b-done")) == 0 })
}
