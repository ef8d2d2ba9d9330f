package events_test

import (
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

func TestCompletionNeedsResumedAndReadyInEitherOrder(t *testing.T) {
	ref := events.BackupRef{BackupID: "bk-1", Workload: events.Workload{Cluster: "c", Namespace: "shop", Kind: "deployment", Name: "redis"}}
	snaps := []events.Snapshot{{Name: "ff-1-data", Namespace: "shop", PVC: "data", CutAt: time.Now()}}
	ev := func(p events.Payload) events.Event {
		t.Helper()
		e, err := eventstest.NewEvent(p)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	quiesced := ev(&events.Quiesced{BackupRef: ref, QuiescedAt: time.Now()})
	snapshotted := ev(&events.Snapshotted{BackupRef: ref, Mode: events.SnapshotModeVolume, Snapshots: snaps})
	resumed := ev(&events.Resumed{BackupRef: ref, Reason: events.ResumeAfterSnapshot, Succeeded: true})
	resumedFailed := ev(&events.Resumed{BackupRef: ref, Reason: events.ResumeAfterFailure})
	ready := ev(&events.SnapshotReady{BackupRef: ref, Mode: events.SnapshotModeVolume, Snapshots: snaps})
	readyFailed := ev(&events.BackupFailed{BackupRef: ref, Step: events.StepReady, Reason: "snapshot error"})
	snapFailed := ev(&events.BackupFailed{BackupRef: ref, Step: events.StepSnapshot, Reason: "no class", ResumePending: true})

	for _, tt := range []struct {
		name           string
		seq            []events.Event
		wantCompleteAt int // index of the completing event, -1 for none
		wantSucceeded  bool
	}{
		{"resumed then ready", []events.Event{quiesced, snapshotted, resumed, ready}, 3, true},
		{"ready then resumed", []events.Event{quiesced, snapshotted, ready, resumed}, 3, true},
		{"resumed, ready pending", []events.Event{quiesced, snapshotted, resumed}, -1, false},
		{"not ready after resume", []events.Event{quiesced, snapshotted, resumed, readyFailed}, 3, false},
		{"snapshot failed", []events.Event{quiesced, snapFailed, resumedFailed}, 2, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var c events.Completion
			at := -1
			for i, e := range tt.seq {
				if c.Observe(e) {
					at = i
					break
				}
			}
			if at != tt.wantCompleteAt {
				t.Fatalf("complete at event %d, want %d", at, tt.wantCompleteAt)
			}
			if at >= 0 && events.Succeeded(tt.seq[at]) != tt.wantSucceeded {
				t.Errorf("Succeeded(%s) = %v, want %v", tt.seq[at].Kind(), !tt.wantSucceeded, tt.wantSucceeded)
			}
		})
	}
}

func TestSnapshotReadyValidates(t *testing.T) {
	ref := events.BackupRef{BackupID: "bk-1", Workload: events.Workload{Cluster: "c", Namespace: "shop", Kind: "deployment", Name: "redis"}}
	good := &events.SnapshotReady{BackupRef: ref, Mode: events.SnapshotModeGroup, Group: "ffg-1",
		Snapshots: []events.Snapshot{{Name: "m-1", Namespace: "shop", PVC: "data", ReadyAt: time.Now()}}}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid SnapshotReady: %v", err)
	}
	for name, bad := range map[string]*events.SnapshotReady{
		"group without name":  {BackupRef: ref, Mode: events.SnapshotModeGroup, Snapshots: good.Snapshots},
		"member without name": {BackupRef: ref, Mode: events.SnapshotModeGroup, Group: "g", Snapshots: []events.Snapshot{{PVC: "data"}}},
		"unknown mode":        {BackupRef: ref, Mode: "tape", Snapshots: good.Snapshots},
		"no snapshots":        {BackupRef: ref, Mode: events.SnapshotModeVolume},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%s: validated", name)
		}
	}
	// In group mode the members' names may follow the cut.
	cut := &events.Snapshotted{BackupRef: ref, Mode: events.SnapshotModeGroup, Group: "ffg-1", Snapshots: []events.Snapshot{{Namespace: "shop", PVC: "data"}}}
	if err := cut.Validate(); err != nil {
		t.Errorf("group Snapshotted without member names: %v", err)
	}
}
