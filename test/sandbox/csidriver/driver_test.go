package csidriver_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/freezeframe/freezeframe/test/sandbox/csidriver"
)

var mountRW = []*csi.VolumeCapability{{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}}

// A snapshot is a copy made at CreateSnapshot: it has its creation time at once, turns
// ready after the delay, and restores into a new volume with the content it had.
func TestSnapshotCopiesAndTurnsReadyLate(t *testing.T) {
	ctx := t.Context()
	d, err := csidriver.New(csidriver.Options{Root: t.TempDir(), ReadyDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	vol, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "data", VolumeCapabilities: mountRW})
	if err != nil {
		t.Fatal(err)
	}
	dir := vol.GetVolume().GetVolumeContext()[csidriver.VolumeContextPath]
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "f"), []byte("before"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/f", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}

	snap, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "s1", SourceVolumeId: vol.GetVolume().GetVolumeId()})
	if err != nil {
		t.Fatal(err)
	}
	if snap.GetSnapshot().GetCreationTime() == nil || snap.GetSnapshot().GetReadyToUse() {
		t.Fatalf("snapshot %+v: want a creation time and not ready (ReadyDelay 1h)", snap.GetSnapshot())
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "f"), []byte("after"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The class parameter overrides the driver's delay.
	quick, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{
		Name: "s2", SourceVolumeId: vol.GetVolume().GetVolumeId(),
		Parameters: map[string]string{csidriver.ParamReadyDelay: "0s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !quick.GetSnapshot().GetReadyToUse() {
		t.Errorf("snapshot with readyDelay=0s not ready")
	}

	restored, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name: "restored", VolumeCapabilities: mountRW,
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.GetSnapshot().GetSnapshotId()},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rdir := restored.GetVolume().GetVolumeContext()[csidriver.VolumeContextPath]
	got, err := os.ReadFile(filepath.Join(rdir, "link"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "before" {
		t.Errorf("restored content %q, want the content at snapshot time", got)
	}

	// Listing reports the same state as CreateSnapshot.
	list, err := d.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: snap.GetSnapshot().GetSnapshotId()})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetEntries()); n != 1 || list.GetEntries()[0].GetSnapshot().GetReadyToUse() {
		t.Errorf("ListSnapshots: %d entries %+v", n, list.GetEntries())
	}
}
