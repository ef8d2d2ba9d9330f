package sandbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	groupsnapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/freezeframe/freezeframe/test/sandbox"
)

// A VolumeGroupSnapshot selecting two PVCs by label is cut by the driver as one group: the
// group and both member VolumeSnapshots get the same creationTime, the copies hold what the
// volumes held at the cut, a member restores like any snapshot, and deleting the group
// deletes the members and the driver's copies.
func TestVolumeGroupSnapshot(t *testing.T) {
	c := sandbox.Shared(t)
	ctx := t.Context()
	ns := "group-snapshots"
	selected := map[string]string{"app": "ledger"}
	volumes := map[string]*sandbox.Volume{}
	for _, pvc := range []string{"data", "wal", "unselected"} {
		vol, err := c.CreateVolume(ctx, ns, pvc, "1Gi")
		if err != nil {
			t.Fatal(err)
		}
		if err := writeFile(vol.Path, "f", pvc+" before the cut"); err != nil {
			t.Fatal(err)
		}
		volumes[pvc] = vol
		if pvc == "unselected" {
			continue
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": selected}})
		if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, pvc, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// A class whose group snapshots take a few seconds to turn ready, so that writes can be
	// made between the cut and readiness.
	slow := "sandbox-group-slow"
	_, err := c.Snapshots.GroupsnapshotV1().VolumeGroupSnapshotClasses().Create(ctx, &groupsnapshotv1.VolumeGroupSnapshotClass{
		ObjectMeta:     metav1.ObjectMeta{Name: slow},
		Driver:         sandbox.DriverName,
		DeletionPolicy: snapshotv1.VolumeSnapshotContentDelete,
		Parameters:     map[string]string{"readyDelay": "4s"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	groups := c.Snapshots.GroupsnapshotV1().VolumeGroupSnapshots(ns)
	_, err = groups.Create(ctx, &groupsnapshotv1.VolumeGroupSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: "ledger"},
		Spec: groupsnapshotv1.VolumeGroupSnapshotSpec{
			Source:                       groupsnapshotv1.VolumeGroupSnapshotSource{Selector: &metav1.LabelSelector{MatchLabels: selected}},
			VolumeGroupSnapshotClassName: &slow,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	var cut time.Time
	poll(t, 60*time.Second, "group snapshot creationTime", func(ctx context.Context) (bool, error) {
		g, err := groups.Get(ctx, "ledger", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if g.Status == nil || g.Status.CreationTime == nil {
			return false, fmt.Errorf("status %+v", g.Status)
		}
		if g.Status.ReadyToUse != nil && *g.Status.ReadyToUse {
			return false, fmt.Errorf("readyToUse before its delay passed")
		}
		cut = g.Status.CreationTime.Time
		return true, nil
	})
	// The copies were made at the cut: later writes must not be in them.
	for pvc, vol := range volumes {
		if err := writeFile(vol.Path, "f", pvc+" after the cut"); err != nil {
			t.Fatal(err)
		}
	}
	var group *groupsnapshotv1.VolumeGroupSnapshot
	poll(t, 90*time.Second, "group snapshot readyToUse", func(ctx context.Context) (bool, error) {
		group, err = groups.Get(ctx, "ledger", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if group.Status.Error != nil && group.Status.Error.Message != nil {
			return false, fmt.Errorf("group snapshot error: %s", *group.Status.Error.Message)
		}
		return group.Status.ReadyToUse != nil && *group.Status.ReadyToUse, nil
	})

	// The group's readiness follows its VolumeGroupSnapshotContent; each member
	// VolumeSnapshot turns ready on its own, from ListSnapshots.
	var members []snapshotv1.VolumeSnapshot
	poll(t, 60*time.Second, "member VolumeSnapshots ready", func(ctx context.Context) (bool, error) {
		members, err = c.GroupSnapshotMembers(ctx, ns, "ledger")
		if err != nil {
			return false, err
		}
		if len(members) != 2 {
			return false, fmt.Errorf("%d members", len(members))
		}
		for _, vs := range members {
			if vs.Status == nil || vs.Status.ReadyToUse == nil || !*vs.Status.ReadyToUse {
				return false, fmt.Errorf("member %s not ready: %+v", vs.Name, vs.Status)
			}
		}
		return true, nil
	})
	content, err := c.Snapshots.GroupsnapshotV1().VolumeGroupSnapshotContents().Get(ctx, *group.Status.BoundVolumeGroupSnapshotContentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("VolumeGroupSnapshot %s/%s uid %s: creationTime %s, content %s (groupSnapshotHandle %s)",
		ns, group.Name, group.UID, cut.Format(time.RFC3339Nano), content.Name, *content.Status.VolumeGroupSnapshotHandle)
	for _, info := range content.Status.VolumeSnapshotInfoList {
		t.Logf("  content volumeSnapshotInfoList: volumeHandle %s snapshotHandle %s creationTime %d (ns)", info.VolumeHandle, info.SnapshotHandle, *info.CreationTime)
	}

	var pvcs []string
	for _, vs := range members {
		t.Logf("  member VolumeSnapshot %s/%s: pvc %s, ownerReferences %+v, labels %v, finalizers %v, status.volumeGroupSnapshotName %v, status.creationTime %s, content %s",
			vs.Namespace, vs.Name, *vs.Spec.Source.PersistentVolumeClaimName, vs.OwnerReferences, vs.Labels, vs.Finalizers,
			deref(vs.Status.VolumeGroupSnapshotName), vs.Status.CreationTime.Format(time.RFC3339Nano), *vs.Status.BoundVolumeSnapshotContentName)
		pvc := *vs.Spec.Source.PersistentVolumeClaimName
		pvcs = append(pvcs, pvc)
		if vs.Namespace != ns || deref(vs.Status.VolumeGroupSnapshotName) != group.Name {
			t.Errorf("member %s: namespace %s, volumeGroupSnapshotName %q; want %s and %s", vs.Name, vs.Namespace, deref(vs.Status.VolumeGroupSnapshotName), ns, group.Name)
		}
		if vs.Status.CreationTime == nil || !vs.Status.CreationTime.Equal(group.Status.CreationTime) {
			t.Errorf("member %s created %v, group %v: want one instant", vs.Name, vs.Status.CreationTime, group.Status.CreationTime)
		}
		path, err := c.SnapshotPath(ctx, ns, vs.Name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readFile(path, "f")
		if err != nil {
			t.Fatal(err)
		}
		if want := pvc + " before the cut"; got != want {
			t.Errorf("member of %s holds %q, want %q", pvc, got, want)
		}
	}
	slices.Sort(pvcs)
	if !slices.Equal(pvcs, []string{"data", "wal"}) {
		t.Errorf("members are of PVCs %v, want data and wal", pvcs)
	}

	restored, err := c.RestoreVolume(ctx, ns, members[0].Name, ns, "restored")
	if err != nil {
		t.Fatal(err)
	}
	got, err := readFile(restored.Path, "f")
	if err != nil {
		t.Fatal(err)
	}
	if want := *members[0].Spec.Source.PersistentVolumeClaimName + " before the cut"; got != want {
		t.Errorf("restored member holds %q, want %q", got, want)
	}

	groupHandle := *content.Status.VolumeGroupSnapshotHandle
	if err := groups.Delete(ctx, group.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 60*time.Second, "group snapshot, members and copies deleted", func(ctx context.Context) (bool, error) {
		if _, ok := c.Driver.GroupSnapshot(groupHandle); ok {
			return false, fmt.Errorf("driver still holds group %s", groupHandle)
		}
		for _, vs := range members {
			_, err := c.Snapshots.SnapshotV1().VolumeSnapshots(ns).Get(ctx, vs.Name, metav1.GetOptions{})
			if !apierrors.IsNotFound(err) {
				return false, fmt.Errorf("member %s: %v", vs.Name, err)
			}
		}
		_, err := groups.Get(ctx, group.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
