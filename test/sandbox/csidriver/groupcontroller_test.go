package csidriver_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/freezeframe/freezeframe/test/sandbox/csidriver"
)

// A group snapshot cuts every volume at one instant: its members share one creation time,
// hold each volume's content as of the call, are ordinary snapshots (listed, restorable),
// and go with the group when it is deleted.
func TestGroupSnapshotCutsAllVolumesAtOnce(t *testing.T) {
	ctx := t.Context()
	d, err := csidriver.New(csidriver.Options{Root: t.TempDir(), ReadyDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var ids, dirs []string
	for _, name := range []string{"data", "wal"} {
		vol, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: mountRW})
		if err != nil {
			t.Fatal(err)
		}
		dir := vol.GetVolume().GetVolumeContext()[csidriver.VolumeContextPath]
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte(name+" before"), 0o600); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, vol.GetVolume().GetVolumeId())
		dirs = append(dirs, dir)
	}

	req := &csi.CreateVolumeGroupSnapshotRequest{Name: "g1", SourceVolumeIds: ids}
	created, err := d.CreateVolumeGroupSnapshot(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	group := created.GetGroupSnapshot()
	if group.GetGroupSnapshotId() == "" || group.GetCreationTime() == nil || group.GetReadyToUse() {
		t.Fatalf("group %+v: want an ID, a creation time, and not ready (ReadyDelay 1h)", group)
	}
	if n := len(group.GetSnapshots()); n != 2 {
		t.Fatalf("group has %d snapshots, want 2", n)
	}
	for i, s := range group.GetSnapshots() {
		if s.GetSourceVolumeId() != ids[i] {
			t.Errorf("member %d is of volume %s, want %s (request order)", i, s.GetSourceVolumeId(), ids[i])
		}
		if !s.GetCreationTime().AsTime().Equal(group.GetCreationTime().AsTime()) {
			t.Errorf("member %s created %v, group %v: want one instant", s.GetSnapshotId(), s.GetCreationTime().AsTime(), group.GetCreationTime().AsTime())
		}
		if s.GetGroupSnapshotId() != group.GetGroupSnapshotId() || s.GetReadyToUse() {
			t.Errorf("member %+v: want group_snapshot_id %s and not ready", s, group.GetGroupSnapshotId())
		}
	}
	for i, dir := range dirs {
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte("after"), 0o600); err != nil {
			t.Fatal(err)
		}
		snap, ok := d.Snapshot(group.GetSnapshots()[i].GetSnapshotId())
		if !ok {
			t.Fatalf("driver has no snapshot %s", group.GetSnapshots()[i].GetSnapshotId())
		}
		got, err := os.ReadFile(filepath.Join(snap.Path, "f"))
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"data before", "wal before"}[i]; string(got) != want {
			t.Errorf("member %d holds %q, want %q", i, got, want)
		}
	}

	t.Run("idempotent by name", func(t *testing.T) {
		// Same volumes in another order: the same group, not a new cut.
		again, err := d.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g1", SourceVolumeIds: []string{ids[1], ids[0]}})
		if err != nil {
			t.Fatal(err)
		}
		if again.GetGroupSnapshot().GetGroupSnapshotId() != group.GetGroupSnapshotId() ||
			!again.GetGroupSnapshot().GetCreationTime().AsTime().Equal(group.GetCreationTime().AsTime()) {
			t.Errorf("repeated create returned %+v, want group %s", again.GetGroupSnapshot(), group.GetGroupSnapshotId())
		}
		for _, other := range []*csi.CreateVolumeGroupSnapshotRequest{
			{Name: "g1", SourceVolumeIds: ids[:1]},
			{Name: "g1", SourceVolumeIds: ids, Parameters: map[string]string{csidriver.ParamReadyDelay: "0s"}},
		} {
			_, err := d.CreateVolumeGroupSnapshot(ctx, other)
			if status.Code(err) != codes.AlreadyExists {
				t.Errorf("create %+v: %v, want AlreadyExists", other, err)
			}
		}
	})

	t.Run("members are ordinary snapshots", func(t *testing.T) {
		member := group.GetSnapshots()[0].GetSnapshotId()
		list, err := d.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: member})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(list.GetEntries()); n != 1 || list.GetEntries()[0].GetSnapshot().GetGroupSnapshotId() != group.GetGroupSnapshotId() {
			t.Errorf("ListSnapshots(%s): %+v", member, list.GetEntries())
		}
		restored, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{
			Name: "restored", VolumeCapabilities: mountRW,
			VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
				Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: member},
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(restored.GetVolume().GetVolumeContext()[csidriver.VolumeContextPath], "f"))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "data before" {
			t.Errorf("restored member holds %q, want %q", got, "data before")
		}
	})

	t.Run("readyDelay parameter", func(t *testing.T) {
		quick, err := d.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{
			Name: "quick", SourceVolumeIds: ids, Parameters: map[string]string{csidriver.ParamReadyDelay: "0s"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if !quick.GetGroupSnapshot().GetReadyToUse() {
			t.Errorf("group with readyDelay=0s not ready: %+v", quick.GetGroupSnapshot())
		}
		got, err := d.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: group.GetGroupSnapshotId()})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetGroupSnapshot().GetReadyToUse() {
			t.Errorf("group %s ready before its hour passed", group.GetGroupSnapshotId())
		}
	})

	t.Run("delete", func(t *testing.T) {
		var members, copies []string
		for _, s := range group.GetSnapshots() {
			snap, _ := d.Snapshot(s.GetSnapshotId())
			members, copies = append(members, snap.ID), append(copies, snap.Path)
		}
		_, err := d.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{
			GroupSnapshotId: group.GetGroupSnapshotId(), SnapshotIds: members[:1],
		})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("delete naming one of two members: %v, want InvalidArgument", err)
		}
		req := &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: group.GetGroupSnapshotId(), SnapshotIds: members}
		if _, err := d.DeleteVolumeGroupSnapshot(ctx, req); err != nil {
			t.Fatal(err)
		}
		for i, id := range members {
			if _, ok := d.Snapshot(id); ok {
				t.Errorf("member %s survived its group", id)
			}
			if _, err := os.Stat(copies[i]); !os.IsNotExist(err) {
				t.Errorf("member %s: copy %s still there (%v)", id, copies[i], err)
			}
		}
		_, err = d.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: group.GetGroupSnapshotId()})
		if status.Code(err) != codes.NotFound {
			t.Errorf("get deleted group: %v, want NotFound", err)
		}
		if _, err := d.DeleteVolumeGroupSnapshot(ctx, req); err != nil {
			t.Errorf("second delete: %v, want OK", err)
		}
	})
}

// A member deleted on its own leaves the group, which keeps the others.
func TestGroupSnapshotMemberDeletedAlone(t *testing.T) {
	ctx := t.Context()
	d, err := csidriver.New(csidriver.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, name := range []string{"a", "b"} {
		vol, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: mountRW})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, vol.GetVolume().GetVolumeId())
	}
	created, err := d.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g", SourceVolumeIds: ids})
	if err != nil {
		t.Fatal(err)
	}
	group := created.GetGroupSnapshot()
	if !group.GetReadyToUse() {
		t.Errorf("group without ready delay not ready")
	}
	first, second := group.GetSnapshots()[0].GetSnapshotId(), group.GetSnapshots()[1].GetSnapshotId()
	if _, err := d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: first}); err != nil {
		t.Fatal(err)
	}
	got, err := d.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{
		GroupSnapshotId: group.GetGroupSnapshotId(), SnapshotIds: []string{first, second},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s := got.GetGroupSnapshot().GetSnapshots(); len(s) != 1 || s[0].GetSnapshotId() != second {
		t.Errorf("group after deleting %s: %+v, want only %s", first, s, second)
	}
}
