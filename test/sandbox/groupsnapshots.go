package sandbox

import (
	"context"
	"fmt"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GroupSnapshotMembers returns the VolumeSnapshots that snapshot-controller created for the
// members of VolumeGroupSnapshot ns/name: one per PVC, in the group's namespace, each with
// an ownerReference to the group (kind VolumeGroupSnapshot, the group's UID) and
// spec.source.persistentVolumeClaimName naming its PVC. There may be none yet: they appear
// once the driver has cut the group.
func (c *Cluster) GroupSnapshotMembers(ctx context.Context, ns, name string) ([]snapshotv1.VolumeSnapshot, error) {
	group, err := c.Snapshots.GroupsnapshotV1().VolumeGroupSnapshots(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("group snapshot members %s/%s: %w", ns, name, err)
	}
	all, err := c.Snapshots.SnapshotV1().VolumeSnapshots(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("group snapshot members %s/%s: %w", ns, name, err)
	}
	var members []snapshotv1.VolumeSnapshot
	for _, vs := range all.Items {
		for _, ref := range vs.OwnerReferences {
			if ref.Kind == "VolumeGroupSnapshot" && ref.UID == group.UID {
				members = append(members, vs)
				break
			}
		}
	}
	return members, nil
}
