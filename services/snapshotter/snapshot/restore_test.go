package snapshot_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot/snapshottest"
)

// bindOnCreate binds every claim created with a dataSource at once, as a
// provisioner would.
var bindOnCreate = kubeReactor{verb: "create", resource: "persistentvolumeclaims", react: func(a k8stesting.Action) (bool, runtime.Object, error) {
	pvc := a.(k8stesting.CreateAction).GetObject().(*corev1.PersistentVolumeClaim)
	if pvc.Spec.DataSource != nil {
		pvc.Spec.VolumeName = "pv-restored-" + pvc.Name
		pvc.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound,
			Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}
	}
	return false, nil, nil
}}

// restore publishes a restore of the backup whose SnapshotReady is ready and
// returns its outcome.
func (e *env) restore(ready *events.SnapshotReady, restoreID string, mod func(*events.RestoreRequested)) events.Event {
	e.t.Helper()
	req := events.RestoreRequested{BackupRef: ready.BackupRef, RestoreID: restoreID, NameSuffix: "-r", Mode: ready.Mode}
	for _, s := range ready.Snapshots {
		req.Volumes = append(req.Volumes, events.RestoreVolume{PVC: s.PVC, Snapshot: s.Name, Claim: events.RestoreClaimName(s.PVC, "-r")})
	}
	if mod != nil {
		mod(&req)
	}
	if _, err := e.client.RequestRestore(e.t.Context(), req); err != nil {
		e.t.Fatal(err)
	}
	ev, err := e.client.WaitRestore(e.t.Context(), ready.BackupID, restoreID, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return ev
}

func TestRestoreMakesBoundClaimsFromTheSnapshots(t *testing.T) {
	e := start(t, options{objects: twoClaims(), ctrl: snapshottest.ControllerOptions{ReadyAtCut: true}, kubeReactors: []kubeReactor{bindOnCreate}})
	e.quiesce("bk-r", nil)
	evs := e.untilKinds("bk-r", events.KindSnapshotReady, events.KindFailed)
	ready, ok := evs[len(evs)-1].Payload.(*events.SnapshotReady)
	if !ok {
		t.Fatalf("backup: %s %+v", evs[len(evs)-1].Kind(), evs[len(evs)-1].Payload)
	}

	ev := e.restore(ready, "rs-1", nil)
	done, ok := ev.Payload.(*events.Restored)
	if !ok {
		t.Fatalf("restore: %s %+v", ev.Kind(), ev.Payload)
	}
	if !done.Consistent || done.TargetNamespace != namespace || len(done.Claims) != 2 {
		t.Fatalf("restored %+v", done)
	}
	for _, c := range done.Claims {
		if c.Name != c.PVC+"-r" || c.Volume != "pv-restored-"+c.Name || c.Capacity != "1Gi" || c.BoundAt.IsZero() {
			t.Errorf("claim %+v", c)
		}
		pvc, err := e.kube.CoreV1().PersistentVolumeClaims(namespace).Get(t.Context(), c.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ds := pvc.Spec.DataSource
		if ds == nil || ds.Kind != "VolumeSnapshot" || ds.Name != snapshot.SnapshotName("bk-r", c.PVC) || *ds.APIGroup != "snapshot.storage.k8s.io" {
			t.Errorf("claim %s: dataSource %+v", c.Name, ds)
		}
		if *pvc.Spec.StorageClassName != "standard" || pvc.Labels[snapshot.LabelRestoredFrom] != "bk-r" || pvc.Labels[snapshot.LabelBackupID] != "" {
			t.Errorf("claim %s: class %v, labels %v", c.Name, *pvc.Spec.StorageClassName, pvc.Labels)
		}
	}

	// Delivered again (a lost ack), or asked again under another id: the
	// claims made are found, not made twice.
	creates := func() int {
		n := 0
		for _, a := range e.kube.Actions() {
			if a.GetVerb() == "create" && a.GetResource().Resource == "persistentvolumeclaims" {
				n++
			}
		}
		return n
	}
	before := creates()
	if ev := e.restore(ready, "rs-2", nil); ev.Kind() != events.KindRestored {
		t.Fatalf("second restore: %s %+v", ev.Kind(), ev.Payload)
	}
	if got := creates() - before; got != 2 {
		t.Errorf("%d creates, want 2 (both refused as existing, then taken over)", got)
	}

	// A claim of that name that is not this backup's restore is left alone.
	ev = e.restore(ready, "rs-3", func(r *events.RestoreRequested) { r.Volumes = r.Volumes[:1]; r.Volumes[0].Claim = "wal" })
	if f, ok := ev.Payload.(*events.RestoreFailed); !ok || !strings.Contains(f.Reason, "is not a restore of this backup") {
		t.Fatalf("restore over a foreign claim: %s %+v", ev.Kind(), ev.Payload)
	}
}

func TestRestoreRefusesABackupThatDidNotEndWell(t *testing.T) {
	e := start(t, options{objects: twoClaims(), ctrl: snapshottest.ControllerOptions{ReadyAtCut: true}, kubeReactors: []kubeReactor{bindOnCreate}})
	// Never frozen, so no end: its snapshots cannot be vouched for.
	ready := &events.SnapshotReady{BackupRef: events.BackupRef{BackupID: "bk-none", Workload: db}, Mode: events.SnapshotModeVolume,
		Snapshots: []events.Snapshot{{Name: snapshot.SnapshotName("bk-none", "data"), Namespace: namespace, PVC: "data"}}}
	ev := e.restore(ready, "rs-1", nil)
	f, ok := ev.Payload.(*events.RestoreFailed)
	if !ok || !strings.Contains(f.Reason, "not consistent") || !strings.Contains(f.Reason, "--allow-inconsistent") {
		t.Fatalf("got %s %+v, want restore-failed saying not consistent", ev.Kind(), ev.Payload)
	}
	// Allowed: it goes as far as the snapshot, which does not exist.
	ev = e.restore(ready, "rs-2", func(r *events.RestoreRequested) { r.AllowInconsistent = true })
	if f, ok := ev.Payload.(*events.RestoreFailed); !ok || !strings.Contains(f.Reason, "not found") {
		t.Fatalf("got %s %+v, want restore-failed saying the snapshot is not found", ev.Kind(), ev.Payload)
	}
}
