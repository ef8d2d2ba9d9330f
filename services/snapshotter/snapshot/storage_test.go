package snapshot_test

import (
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot/snapshottest"
)

// driver is the CSI driver of the test cluster's storage class.
const driver = snapshottest.Driver

// storage is what the test cluster knows about volumes: bound claims, the
// storage classes that name their driver, and snapshot classes.
type storage struct {
	claims         []*corev1.PersistentVolumeClaim
	storageClasses []*storagev1.StorageClass
	classes        []runtime.Object
}

func (s *storage) kube() []runtime.Object {
	var out []runtime.Object
	for _, c := range s.claims {
		out = append(out, c)
	}
	for _, c := range s.storageClasses {
		out = append(out, c)
	}
	return out
}

// defaultStorage binds every claim the tests mount to storage class
// "standard" on driver, whose default snapshot class is "csi-default";
// "csi-fast" is another class of the same driver and "other-driver" one of
// another driver.
func defaultStorage() *storage {
	st := &storage{
		storageClasses: []*storagev1.StorageClass{{ObjectMeta: metav1.ObjectMeta{Name: "standard"}, Provisioner: driver}},
		classes: []runtime.Object{
			snapshotClass("csi-default", driver, true),
			snapshotClass("csi-fast", driver, false),
			snapshotClass("from-config", driver, false),
			snapshotClass("from-event", driver, false),
			snapshotClass("other-driver", "other.csi.example.com", true),
		},
	}
	for _, name := range []string{"data", "wal", "scratch", "web-cache"} {
		st.claims = append(st.claims, boundClaim(name, "standard"))
	}
	return st
}

func boundClaim(name, class string) *corev1.PersistentVolumeClaim {
	return snapshottest.BoundClaim(namespace, name, class)
}

func snapshotClass(name, driver string, isDefault bool) *snapv1.VolumeSnapshotClass {
	return snapshottest.NewSnapshotClass(name, driver, isDefault)
}
