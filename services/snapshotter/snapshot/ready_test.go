package snapshot_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot/snapshottest"
)

// untilKinds collects backupID's events until one of kinds arrives.
func (e *env) untilKinds(backupID string, kinds ...events.Kind) []events.Event {
	e.t.Helper()
	col := eventstest.Collect(e.t.Context(), e.t, e.client, events.Filter{BackupID: backupID})
	return col.Until(timeout, func(ev events.Event) bool {
		for _, k := range kinds {
			if ev.Kind() == k {
				return true
			}
		}
		return false
	})
}

func TestSnapshotReadyFollowsTheCut(t *testing.T) {
	e := start(t, options{objects: twoClaims()})
	e.quiesce("bk-ready", nil)
	if ev := e.outcome("bk-ready"); ev.Kind() != events.KindSnapshotted {
		t.Fatalf("got %s %+v, want snapshotted", ev.Kind(), ev.Payload)
	}
	// Not ready yet: no SnapshotReady while the storage uploads.
	eventstest.Consistently(t, 200*time.Millisecond, "no snapshot-ready before readiness", func() bool {
		return e.count(events.KindSnapshotReady, "bk-ready") == 0
	})
	if err := e.ctrl.MarkReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	evs := e.untilKinds("bk-ready", events.KindSnapshotReady, events.KindFailed)
	r, ok := evs[len(evs)-1].Payload.(*events.SnapshotReady)
	if !ok {
		t.Fatalf("got %s %+v, want snapshot-ready", evs[len(evs)-1].Kind(), evs[len(evs)-1].Payload)
	}
	if r.Mode != events.SnapshotModeVolume || len(r.Snapshots) != 2 {
		t.Fatalf("snapshot-ready = %+v", r)
	}
	for _, s := range r.Snapshots {
		if s.Name != snapshot.SnapshotName("bk-ready", s.PVC) || s.ReadyAt.IsZero() || !s.CutAt.Equal(cutTime) || s.Class != "csi-default" {
			t.Errorf("ready snapshot %+v", s)
		}
	}
	if len(r.Pruned) != 0 {
		t.Errorf("pruned %v with no retention set", r.Pruned)
	}
}

func TestSnapshotErrorAfterTheCutFailsStepReady(t *testing.T) {
	e := start(t, options{objects: twoClaims()})
	e.quiesce("bk-upload", nil)
	if ev := e.outcome("bk-upload"); ev.Kind() != events.KindSnapshotted {
		t.Fatalf("got %s %+v, want snapshotted", ev.Kind(), ev.Payload)
	}
	name := snapshot.SnapshotName("bk-upload", "wal")
	vs, err := e.snaps.SnapshotV1().VolumeSnapshots(namespace).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msg := "upload to object storage failed: quota exceeded"
	vs.Status.Error = &snapv1.VolumeSnapshotError{Message: &msg}
	if _, err := e.snaps.SnapshotV1().VolumeSnapshots(namespace).UpdateStatus(t.Context(), vs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	evs := e.untilKinds("bk-upload", events.KindSnapshotReady, events.KindFailed)
	f, ok := evs[len(evs)-1].Payload.(*events.BackupFailed)
	if !ok {
		t.Fatalf("got %s, want failed", evs[len(evs)-1].Kind())
	}
	if f.Step != events.StepReady || f.ResumePending || !strings.Contains(f.Reason, msg) || !strings.Contains(f.Reason, name) {
		t.Errorf("failed = %+v, want step ready, nothing to resume, the snapshot and its error named", f)
	}
}

func TestNotReadyInTimeFailsStepReady(t *testing.T) {
	e := start(t, options{objects: twoClaims(), cfg: snapshot.Config{ReadyTimeout: 300 * time.Millisecond}})
	e.quiesce("bk-slow", nil)
	evs := e.untilKinds("bk-slow", events.KindSnapshotReady, events.KindFailed)
	f, ok := evs[len(evs)-1].Payload.(*events.BackupFailed)
	if !ok {
		t.Fatalf("got %s, want failed", evs[len(evs)-1].Kind())
	}
	if f.Step != events.StepReady || !strings.Contains(f.Reason, "snapshots not ready within 300ms of the cut") {
		t.Errorf("failed = %+v", f)
	}
	if n := e.count(events.KindSnapshotted, "bk-slow"); n != 1 {
		t.Errorf("%d Snapshotted, want 1 before the readiness failure", n)
	}
}

func TestRetentionKeepsTheNewestN(t *testing.T) {
	e := start(t, options{objects: twoClaims(), ctrl: snapshottest.ControllerOptions{ReadyAtCut: true}})
	// bk-0 is in flight (cut, never ready): it neither counts nor goes.
	e.quiesce("bk-0", func(q *events.Quiesced) { q.Volumes = []string{"data"} })
	e.untilKinds("bk-0", events.KindSnapshotReady)
	name0 := snapshot.SnapshotName("bk-0", "data")
	vs, err := e.snaps.SnapshotV1().VolumeSnapshots(namespace).Get(t.Context(), name0, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	notReady := false
	vs.Status.ReadyToUse = &notReady
	if _, err := e.snaps.SnapshotV1().VolumeSnapshots(namespace).UpdateStatus(t.Context(), vs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	var last *events.SnapshotReady
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("bk-%d", i)
		e.quiesce(id, func(q *events.Quiesced) { q.SnapshotsToKeep = 2 })
		evs := e.untilKinds(id, events.KindSnapshotReady, events.KindFailed)
		r, ok := evs[len(evs)-1].Payload.(*events.SnapshotReady)
		if !ok {
			t.Fatalf("%s: got %s, want snapshot-ready", id, evs[len(evs)-1].Kind())
		}
		last = r
	}
	// Every backup has the same cut time here (the stand-in controller's),
	// so the newest by backup id are kept.
	want := map[string]bool{name0: true}
	for _, id := range []string{"bk-5", "bk-4"} {
		want[snapshot.SnapshotName(id, "data")] = true
		want[snapshot.SnapshotName(id, "wal")] = true
	}
	poll(t, "exactly the two newest complete backups and the one in flight left", func() bool {
		got := e.snapshots()
		if len(got) != len(want) {
			return false
		}
		for _, s := range got {
			if !want[s.Name] {
				return false
			}
		}
		return true
	})
	if last.SnapshotsToKeep != 2 || len(last.Pruned) != 1 || last.Pruned[0] != "bk-3" {
		t.Errorf("last snapshot-ready: keep %d, pruned %v; want keep 2, pruned [bk-3]", last.SnapshotsToKeep, last.Pruned)
	}
}
