package snapshot_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot/snapshottest"
)

// While it waits for the cut, the snapshotter reports progress to the
// watchdogs in the freeze lease bucket; the report goes when it is done.
func TestProgressReportedWhileCutting(t *testing.T) {
	e := start(t, options{
		objects: twoClaims(),
		cfg:     snapshot.Config{CutTimeout: 3 * time.Second, ProgressEvery: 50 * time.Millisecond, Replica: "snapshotter-7"},
		ctrl:    snapshottest.ControllerOptions{NeverCut: map[string]bool{"wal": true}},
	})
	kv, err := e.js.KeyValue(t.Context(), events.FreezesBucket) // made by the set-up
	if err != nil {
		t.Fatal(err)
	}
	key, err := events.SnapshotProgressKey(db)
	if err != nil {
		t.Fatal(err)
	}
	e.quiesce("bk-progress", nil)

	var first events.SnapshotProgress
	var revs []uint64
	poll(t, "progress renewed while the cut is awaited", func() bool {
		entry, err := kv.Get(t.Context(), key)
		if err != nil {
			return false
		}
		if len(revs) == 0 {
			if err := json.Unmarshal(entry.Value(), &first); err != nil {
				t.Fatal(err)
			}
		}
		if len(revs) == 0 || revs[len(revs)-1] != entry.Revision() {
			revs = append(revs, entry.Revision())
		}
		return len(revs) >= 3
	})
	if first.BackupID != "bk-progress" || first.Replica != "snapshotter-7" || first.RenewedAt.IsZero() {
		t.Errorf("progress = %+v", first)
	}
	if ev := e.outcome("bk-progress"); ev.Kind() != events.KindFailed {
		t.Fatalf("got %s, want failed (wal is never cut)", ev.Kind())
	}
	poll(t, "progress report deleted once the snapshotter is done", func() bool {
		_, err := kv.Get(t.Context(), key)
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
}
