package snapshot_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot/snapshottest"
)

// The watchdog unlocked the application while no snapshotter ran; the
// Quiesced the snapshotter reads when it comes back must not become a
// snapshot of the now-writing application, kept as a backup.
func TestNoCutOnceTheFreezeEnded(t *testing.T) {
	e := start(t, options{objects: twoClaims()})
	ref := events.BackupRef{BackupID: "bk-late", Workload: db}
	epoch := eventstest.Freeze(t, e.js, ref)
	eventstest.EndFreeze(t, e.js, events.FreezeEnd{BackupID: ref.BackupID, Workload: db, Reason: events.ResumeStaleLock, Resumed: true})
	e.quiesce("bk-late", func(q *events.Quiesced) { q.FreezeEpoch = epoch })
	e.settled()
	if n := e.creates(); n != 0 {
		t.Fatalf("%d volumesnapshots created after the freeze ended, want 0", n)
	}
	for _, k := range []events.Kind{events.KindSnapshotted, events.KindSnapshotReady, events.KindFailed} {
		if n := e.count(k, "bk-late"); n != 0 {
			t.Errorf("%d %s after the freeze ended, want none", n, k)
		}
	}
}

// The holder's renewals are overdue: it may resume the application any
// moment without writing first, so nothing is cut, and the backup fails
// now (its application resumed now, not at its cap).
func TestNoCutWhenTheRecordNoLongerVouches(t *testing.T) {
	e := start(t, options{objects: twoClaims()})
	ref := events.BackupRef{BackupID: "bk-overdue", Workload: db}
	epoch := eventstest.Freeze(t, e.js, ref)
	live, err := e.js.KeyValue(t.Context(), events.FreezesBucket)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := events.FreezeKey(db)
	cur, err := live.Get(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	var f events.Freeze
	if err := json.Unmarshal(cur.Value(), &f); err != nil {
		t.Fatal(err)
	}
	f.ValidUntil = time.Now().Add(-time.Second).UTC()
	b, _ := json.Marshal(f)
	if _, err := live.Update(t.Context(), k, b, cur.Revision()); err != nil {
		t.Fatal(err)
	}
	e.quiesce("bk-overdue", func(q *events.Quiesced) { q.FreezeEpoch = epoch })
	ev := e.outcome("bk-overdue")
	failed, ok := ev.Payload.(*events.BackupFailed)
	if !ok || failed.Step != events.StepSnapshot || !failed.ResumePending || !strings.Contains(failed.Reason, "vouches for it only until") {
		t.Fatalf("got %s %+v, want a snapshot failure, resume pending, naming the overdue record", ev.Kind(), ev.Payload)
	}
	if n := e.creates(); n != 0 {
		t.Fatalf("%d volumesnapshots created on a record that no longer vouches, want 0", n)
	}
}

// The freeze ends while the storage cuts: the check after the cut sees it,
// the snapshots are deleted and the backup fails, saying why.
func TestCutDeletedWhenTheFreezeEndsDuringIt(t *testing.T) {
	var e *env
	ended := make(chan struct{})
	endOnCreate := func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetVerb() == "create" {
			select {
			case <-ended:
			default:
				close(ended)
				// As the watchdog's unlock would, mid-cut.
				eventstest.EndFreeze(t, e.js, events.FreezeEnd{BackupID: "bk-mid", Workload: db, Reason: events.ResumeStaleLock, Resumed: true})
			}
		}
		return false, nil, nil
	}
	e = start(t, options{objects: twoClaims(), reactors: []k8stesting.ReactionFunc{endOnCreate}})
	e.quiesce("bk-mid", nil)
	ev := e.outcome("bk-mid")
	f, ok := ev.Payload.(*events.BackupFailed)
	if !ok || f.Step != events.StepSnapshot || !strings.Contains(f.Reason, "freeze ended") {
		t.Fatalf("got %s %+v, want a snapshot failure naming the ended freeze", ev.Kind(), ev.Payload)
	}
	poll(t, "the snapshots cut after the freeze ended are deleted", func() bool { return len(e.snapshots()) == 0 })
	if n := e.count(events.KindSnapshotted, "bk-mid"); n != 0 {
		t.Errorf("%d Snapshotted for a cut the freeze did not outlast", n)
	}
}

// A Quiesced redelivered long after its backup completed (past its freeze
// deadline) neither cuts nor deletes anything.
func TestLateQuiescedKeepsACompletedBackup(t *testing.T) {
	e := start(t, options{objects: twoClaims(), ctrl: snapshottest.ControllerOptions{ReadyAtCut: true}})
	e.quiesce("bk-done", nil)
	e.untilKinds("bk-done", events.KindSnapshotReady)
	e.quiesce("bk-done", func(q *events.Quiesced) { q.FreezeDeadline = time.Now().Add(-time.Minute) }, events.WithID("bk-done.quiesced.late"))
	e.settled()
	if n := len(e.snapshots()); n != 2 {
		t.Fatalf("%d volumesnapshots left of the completed backup, want 2", n)
	}
	if n := e.count(events.KindFailed, "bk-done"); n != 0 {
		t.Errorf("%d BackupFailed for a completed backup", n)
	}
}

// Retention counts only backups that resumed with success: a backup cut
// inside its freeze but ended in failure (an unlock came before the resume
// it asked for) neither counts nor stays, and costs no good backup.
func TestRetentionCountsOnlyBackupsThatEndedWell(t *testing.T) {
	e := start(t, options{objects: twoClaims(), ctrl: snapshottest.ControllerOptions{ReadyAtCut: true}})
	e.quiesce("bk-good", func(q *events.Quiesced) { q.SnapshotsToKeep = 1 })
	e.untilKinds("bk-good", events.KindSnapshotReady)
	// bk-bad: its end is recorded as failed while the record still says
	// frozen (the watchdog's unlock won the race with the resume).
	ref := events.BackupRef{BackupID: "bk-bad", Workload: db}
	epoch := eventstest.Freeze(t, e.js, ref)
	eventstest.RecordEnd(t, e.js, events.FreezeEnd{BackupID: "bk-bad", Workload: db, Reason: events.ResumeStaleLock, Resumed: true})
	e.quiesce("bk-bad", func(q *events.Quiesced) { q.FreezeEpoch, q.SnapshotsToKeep = epoch, 1 })
	if ev := e.outcome("bk-bad"); ev.Kind() != events.KindSnapshotted {
		t.Fatalf("got %s, want snapshotted (the freeze held through the cut)", ev.Kind())
	}
	good := map[string]bool{snapshot.SnapshotName("bk-good", "data"): true, snapshot.SnapshotName("bk-good", "wal"): true}
	poll(t, "only the good backup's snapshots left", func() bool {
		got := e.snapshots()
		if len(got) != len(good) {
			return false
		}
		for _, s := range got {
			if !good[s.Name] {
				return false
			}
		}
		return true
	})
	if n := e.count(events.KindSnapshotReady, "bk-bad"); n != 0 {
		t.Errorf("SnapshotReady for a backup that failed")
	}
}
