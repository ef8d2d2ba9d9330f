package snapshot

import (
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
)

// The controller's own optimistic-concurrency conflict is retried by it, so
// it does not fail the backup; any other status error does.
func TestErrorMessageIgnoresTheControllersOwnConflicts(t *testing.T) {
	msg := func(s string) *snapv1.VolumeSnapshotError { return &snapv1.VolumeSnapshotError{Message: &s} }
	conflict := `Failed to create group snapshot: error updating status for volume group snapshot content groupsnapcontent-35fc: snapshot controller failed to update groupsnapcontent-35fc on API server: Operation cannot be fulfilled on volumegroupsnapshotcontents.groupsnapshot.storage.k8s.io "groupsnapcontent-35fc": the object has been modified; please apply your changes to the latest version and try again`
	for _, tt := range []struct {
		in   *snapv1.VolumeSnapshotError
		want string
	}{
		{nil, ""},
		{msg(conflict), ""},
		{msg("disk quota exceeded"), "disk quota exceeded"},
		{&snapv1.VolumeSnapshotError{}, "no message"},
	} {
		if got := errorMessage(tt.in); got != tt.want {
			t.Errorf("errorMessage(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
