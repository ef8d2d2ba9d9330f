// Package snapshottest gives tests that run the snapshotter against fake
// clientsets the storage a real cluster has: bound claims on a CSI storage
// class, a default VolumeSnapshotClass for its driver, and a stand-in for the
// CSI snapshot controller that cuts the snapshots (Controller). Without them
// the snapshotter refuses to snapshot, or waits for a cut that never comes,
// as it would in a real cluster.
package snapshottest

import (
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The fake cluster's storage.
const (
	Driver        = "csi.test.freezeframe.io"
	StorageClass  = "standard"
	SnapshotClass = "csi-default"
)

// StorageClasses returns StorageClass, on Driver, for the fake Kubernetes
// clientset.
func StorageClasses() []runtime.Object {
	return []runtime.Object{&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: StorageClass}, Provisioner: Driver}}
}

// Claims returns, in namespace, one claim per name bound to a volume of
// StorageClass, for the fake Kubernetes clientset.
func Claims(namespace string, names ...string) []runtime.Object {
	var out []runtime.Object
	for _, n := range names {
		out = append(out, BoundClaim(namespace, n, StorageClass))
	}
	return out
}

// BoundClaim is a claim bound to a volume of storage class class.
func BoundClaim(namespace, name, class string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec:       corev1.PersistentVolumeClaimSpec{StorageClassName: &class, VolumeName: "pv-" + namespace + "-" + name},
		Status:     corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound},
	}
}

// Classes returns the default VolumeSnapshotClass of Driver, for the fake
// snapshot clientset.
func Classes() []runtime.Object {
	return []runtime.Object{NewSnapshotClass(SnapshotClass, Driver, true)}
}

// NewSnapshotClass is a VolumeSnapshotClass of driver, annotated the
// driver's default when isDefault.
func NewSnapshotClass(name, driver string, isDefault bool) *snapv1.VolumeSnapshotClass {
	c := &snapv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Driver: driver, DeletionPolicy: snapv1.VolumeSnapshotContentDelete}
	if isDefault {
		c.Annotations = map[string]string{"snapshot.storage.kubernetes.io/is-default-class": "true"}
	}
	return c
}
