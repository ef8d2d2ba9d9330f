package events_test

import (
	"strings"
	"testing"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

func TestRestoreEventIDsNameTheRestore(t *testing.T) {
	ref := events.BackupRef{BackupID: "bk-1", Workload: redis}
	a := &events.RestoreRequested{BackupRef: ref, RestoreID: "rs-a", TargetNamespace: "copy", Volumes: []events.RestoreVolume{{PVC: "data", Snapshot: "ff-1-data", Claim: "data"}}}
	b := *a
	b.RestoreID = "rs-b"
	if events.DefaultID(a) == events.DefaultID(&b) {
		t.Fatalf("two restores of one backup share the event id %s", events.DefaultID(a))
	}
	if !strings.HasSuffix(events.DefaultID(a), ".restore-requested.rs-a") {
		t.Errorf("id %s: want the kind and the restore id at the end", events.DefaultID(a))
	}
	ev, err := eventstest.NewEvent(a)
	if err != nil {
		t.Fatal(err)
	}
	if got := events.RestoreIDOf(ev); got != "rs-a" {
		t.Errorf("RestoreIDOf = %q", got)
	}
	if got := events.Subject(ev.Kind(), ref); !strings.HasPrefix(got, "freezeframe.backup.restore-requested.") {
		t.Errorf("subject %s", got)
	}

	// Each step of an in-place restore is an event of its own.
	down := &events.RestoreProgress{BackupRef: ref, RestoreID: "rs-a", RestoreStep: events.RestoreStep{Step: events.RestoreStepScaleDown}}
	up := &events.RestoreProgress{BackupRef: ref, RestoreID: "rs-a", RestoreStep: events.RestoreStep{Step: events.RestoreStepScaleUp}}
	if !strings.HasSuffix(events.DefaultID(down), ".restore-step.rs-a.scale-down") || events.DefaultID(down) == events.DefaultID(up) {
		t.Errorf("step ids %s, %s: want the restore id and the step at the end", events.DefaultID(down), events.DefaultID(up))
	}
	if ev, err := eventstest.NewEvent(down); err != nil || events.RestoreIDOf(ev) != "rs-a" {
		t.Errorf("step event: %v, restore id %q", err, events.RestoreIDOf(ev))
	}
}

func TestRestoreRequestedValidate(t *testing.T) {
	ref := events.BackupRef{BackupID: "bk-1", Workload: redis}
	vol := events.RestoreVolume{PVC: "data", Snapshot: "ff-1-data", Claim: "data-r"}
	for _, tc := range []struct {
		name string
		req  events.RestoreRequested
		want string
	}{
		{"ok", events.RestoreRequested{BackupRef: ref, RestoreID: "rs-1", Volumes: []events.RestoreVolume{vol}}, ""},
		{"no restore id", events.RestoreRequested{BackupRef: ref, Volumes: []events.RestoreVolume{vol}}, "restore id"},
		{"no volumes", events.RestoreRequested{BackupRef: ref, RestoreID: "rs-1"}, "at least one"},
		{"over the backed-up claim", events.RestoreRequested{BackupRef: ref, RestoreID: "rs-1", Volumes: []events.RestoreVolume{{PVC: "data", Snapshot: "s", Claim: "data"}}}, "backed-up claim itself"},
		{"same name elsewhere", events.RestoreRequested{BackupRef: ref, RestoreID: "rs-1", TargetNamespace: "copy", Volumes: []events.RestoreVolume{{PVC: "data", Snapshot: "s", Claim: "data"}}}, ""},
		{"bad namespace", events.RestoreRequested{BackupRef: ref, RestoreID: "rs-1", TargetNamespace: "Copy!", Volumes: []events.RestoreVolume{vol}}, "targetNamespace"},
		{"claim twice", events.RestoreRequested{BackupRef: ref, RestoreID: "rs-1", Volumes: []events.RestoreVolume{vol, vol}}, "twice"},
		{"in place", events.RestoreRequested{BackupRef: ref, RestoreID: "rs-1", InPlace: true, Volumes: []events.RestoreVolume{{PVC: "data", Snapshot: "s", Claim: "data"}}}, ""},
		{"in place, another name", events.RestoreRequested{BackupRef: ref, RestoreID: "rs-1", InPlace: true, Volumes: []events.RestoreVolume{vol}}, "remakes claim data itself"},
		{"in place, elsewhere", events.RestoreRequested{BackupRef: ref, RestoreID: "rs-1", InPlace: true, TargetNamespace: "copy", Volumes: []events.RestoreVolume{{PVC: "data", Snapshot: "s", Claim: "data"}}}, "workload's namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestRestoreClaimName(t *testing.T) {
	if got := events.RestoreClaimName("data", "-r1"); got != "data-r1" {
		t.Errorf("got %s", got)
	}
	long := events.RestoreClaimName(strings.Repeat("a", 250), "-restored")
	if len(long) != 253 {
		t.Errorf("len %d, want 253", len(long))
	}
}
