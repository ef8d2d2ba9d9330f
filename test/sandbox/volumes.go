package sandbox

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/freezeframe/freezeframe/test/sandbox/csidriver"
)

// Volume is a PersistentVolumeClaim bound to a sandbox CSI volume.
type Volume struct {
	Namespace string
	PVC       string
	PV        string
	// Handle is the CSI volume ID.
	Handle string
	// Path is the directory that backs the volume; a database keeps its data here.
	Path string
}

// CreateVolume provisions a volume statically: the CSI driver creates the directory, and
// a PersistentVolume with that CSI source is created pre-bound to a new claim pvcName in
// namespace ns (created if missing). It returns when the claim is Bound.
func (c *Cluster) CreateVolume(ctx context.Context, ns, pvcName, size string) (*Volume, error) {
	return c.createVolume(ctx, ns, pvcName, size, nil)
}

// RestoreVolume creates claim pvcName in ns from the content of VolumeSnapshot
// snapNS/snapName (the driver copies the snapshot into a new volume directory), the way a
// restore with a dataSource would, and returns when the claim is Bound.
func (c *Cluster) RestoreVolume(ctx context.Context, snapNS, snapName, ns, pvcName string) (*Volume, error) {
	handle, err := c.snapshotHandle(ctx, snapNS, snapName)
	if err != nil {
		return nil, fmt.Errorf("restore volume %s/%s: %w", ns, pvcName, err)
	}
	src := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: handle},
	}}
	return c.createVolume(ctx, ns, pvcName, "1Gi", src)
}

func (c *Cluster) createVolume(ctx context.Context, ns, pvcName, size string, src *csi.VolumeContentSource) (*Volume, error) {
	qty, err := resource.ParseQuantity(size)
	if err != nil {
		return nil, fmt.Errorf("create volume %s/%s: size: %w", ns, pvcName, err)
	}
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		return nil, err
	}
	resp, err := c.Driver.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name:                "pvc-" + ns + "-" + pvcName,
		VolumeContentSource: src,
		CapacityRange:       &csi.CapacityRange{RequiredBytes: qty.Value()},
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("create volume %s/%s: %w", ns, pvcName, err)
	}
	v := &Volume{
		Namespace: ns,
		PVC:       pvcName,
		PV:        "sandbox-" + strings.TrimPrefix(resp.GetVolume().GetVolumeId(), "vol-"),
		Handle:    resp.GetVolume().GetVolumeId(),
		Path:      resp.GetVolume().GetVolumeContext()[csidriver.VolumeContextPath],
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: v.PV},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: qty},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              StorageClassName,
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: pvcName},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver:           DriverName,
				VolumeHandle:     v.Handle,
				VolumeAttributes: resp.GetVolume().GetVolumeContext(),
			}},
		},
	}
	if _, err := c.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create volume %s/%s: %w", ns, pvcName, err)
	}
	sc := StorageClassName
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: pvcName, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &sc,
			VolumeName:       v.PV,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: qty}},
		},
	}
	if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create volume %s/%s: %w", ns, pvcName, err)
	}
	err = waitFor(ctx, nil, 60*time.Second, "claim "+ns+"/"+pvcName+" Bound", func(ctx context.Context) (bool, error) {
		got, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, pvcName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return got.Status.Phase == corev1.ClaimBound, nil
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

// EnsureNamespace creates namespace ns unless it exists, and waits for its default
// ServiceAccount (without it pods are refused).
func (c *Cluster) EnsureNamespace(ctx context.Context, ns string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	return waitFor(ctx, nil, 30*time.Second, "default ServiceAccount in "+ns, func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
}

// SnapshotPath returns the directory holding the copy that VolumeSnapshot ns/name points
// at, once the snapshot is bound to its content.
func (c *Cluster) SnapshotPath(ctx context.Context, ns, name string) (string, error) {
	handle, err := c.snapshotHandle(ctx, ns, name)
	if err != nil {
		return "", fmt.Errorf("snapshot path %s/%s: %w", ns, name, err)
	}
	snap, ok := c.Driver.Snapshot(handle)
	if !ok {
		return "", fmt.Errorf("snapshot path %s/%s: driver has no snapshot %s", ns, name, handle)
	}
	return snap.Path, nil
}

// snapshotHandle returns the CSI snapshot ID behind VolumeSnapshot ns/name.
func (c *Cluster) snapshotHandle(ctx context.Context, ns, name string) (string, error) {
	vs, err := c.Snapshots.SnapshotV1().VolumeSnapshots(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if vs.Status == nil || vs.Status.BoundVolumeSnapshotContentName == nil {
		return "", fmt.Errorf("snapshot %s/%s not bound to a content yet", ns, name)
	}
	content, err := c.Snapshots.SnapshotV1().VolumeSnapshotContents().Get(ctx, *vs.Status.BoundVolumeSnapshotContentName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if content.Status == nil || content.Status.SnapshotHandle == nil {
		return "", fmt.Errorf("snapshot content %s has no handle yet", content.Name)
	}
	return *content.Status.SnapshotHandle, nil
}
