package snapshot_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot/snapshottest"
)

// volumes are the PersistentVolumes of defaultStorage's claims, reclaimed
// by Delete as a dynamically provisioned volume is.
func volumes(claims ...string) []runtime.Object {
	var out []runtime.Object
	for _, c := range claims {
		out = append(out, &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: "pv-" + namespace + "-" + c},
			Spec: corev1.PersistentVolumeSpec{
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
				StorageClassName:              "standard",
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")},
			},
		})
	}
	return out
}

// stopPodsOnScaleDown deletes the db Deployment's pods once it is scaled to
// 0, as the ReplicaSet controller would.
func (e *env) stopPodsOnScaleDown(ctx context.Context) {
	w, err := e.kube.AppsV1().Deployments(namespace).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	go func() {
		<-ctx.Done()
		w.Stop()
	}()
	go func() {
		for ev := range w.ResultChan() {
			d, ok := ev.Object.(*appsv1.Deployment)
			if !ok || d.Name != "db" || d.Spec.Replicas == nil || *d.Spec.Replicas != 0 {
				continue
			}
			pods, _ := e.kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=db"})
			for _, p := range pods.Items {
				_ = e.kube.CoreV1().Pods(namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
			}
		}
	}()
}

func inPlace(r *events.RestoreRequested) {
	r.InPlace, r.NameSuffix = true, ""
	for i := range r.Volumes {
		r.Volumes[i].Claim = r.Volumes[i].PVC
	}
}

func (e *env) backupReady(id string) *events.SnapshotReady {
	e.t.Helper()
	e.quiesce(id, nil)
	evs := e.untilKinds(id, events.KindSnapshotReady, events.KindFailed)
	ready, ok := evs[len(evs)-1].Payload.(*events.SnapshotReady)
	if !ok {
		e.t.Fatalf("backup: %s %+v", evs[len(evs)-1].Kind(), evs[len(evs)-1].Payload)
	}
	return ready
}

func TestRestoreInPlaceSwapsTheWorkloadsClaims(t *testing.T) {
	e := start(t, options{objects: append(twoClaims(), volumes("data", "wal")...), ctrl: snapshottest.ControllerOptions{ReadyAtCut: true}, kubeReactors: []kubeReactor{bindOnCreate}})
	ready := e.backupReady("bk-ip")
	e.stopPodsOnScaleDown(t.Context())

	ev := e.restore(ready, "rs-ip", inPlace)
	done, ok := ev.Payload.(*events.Restored)
	if !ok {
		t.Fatalf("restore: %s %+v", ev.Kind(), ev.Payload)
	}
	var steps []string
	for _, s := range done.Steps {
		steps = append(steps, s.Step)
		t.Logf("%s: %s", s.Step, s.Detail)
	}
	want := []string{events.RestoreStepRetain, events.RestoreStepScaleDown, events.RestoreStepDeleteClaims, events.RestoreStepCreateClaims, events.RestoreStepScaleUp}
	if !slices.Equal(steps, want) {
		t.Errorf("steps %v, want %v", steps, want)
	}
	// Each step was also an event of its own, before the result.
	evs, err := e.client.List(t.Context(), events.Filter{BackupID: "bk-ip", Kinds: []events.Kind{events.KindRestoreStep}}, events.SubscribeOptions{FromStart: true})
	if err != nil {
		t.Fatal(err)
	}
	var published []string
	for _, ev := range evs {
		published = append(published, ev.Payload.(*events.RestoreProgress).Step)
	}
	if !slices.Equal(published, want) {
		t.Errorf("restore-step events %v, want %v", published, want)
	}
	if !done.InPlace || !slices.Equal(done.KeptVolumes, []string{"pv-shop-data", "pv-shop-wal"}) || len(done.Claims) != 2 {
		t.Fatalf("restored %+v", done)
	}
	for _, c := range done.Claims {
		pvc, err := e.kube.CoreV1().PersistentVolumeClaims(namespace).Get(t.Context(), c.PVC, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ds := pvc.Spec.DataSource; ds == nil || ds.Name != snapshot.SnapshotName("bk-ip", c.PVC) || pvc.Labels[snapshot.LabelRestoredFrom] != "bk-ip" {
			t.Errorf("claim %s: dataSource %+v, labels %v", c.PVC, ds, pvc.Labels)
		}
		if got := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; *pvc.Spec.StorageClassName != "standard" || c.Volume != "pv-restored-"+c.PVC {
			t.Errorf("claim %s: class %s, size %s, volume %s", c.PVC, *pvc.Spec.StorageClassName, got.String(), c.Volume)
		}
		pv, err := e.kube.CoreV1().PersistentVolumes().Get(t.Context(), "pv-shop-"+c.PVC, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain || pv.Annotations[snapshot.AnnotationReclaimPolicyBefore] != "Delete" {
			t.Errorf("old volume %s: policy %s, annotations %v: want Retain, was Delete", pv.Name, pv.Spec.PersistentVolumeReclaimPolicy, pv.Annotations)
		}
	}
	d, err := e.kube.AppsV1().Deployments(namespace).Get(t.Context(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Annotations[snapshot.AnnotationInPlaceRestore] != "" {
		t.Errorf("deployment after: replicas %v, annotations %v: want 1 and no record", d.Spec.Replicas, d.Annotations)
	}

	// Asked again (a redelivery, or by hand): the claims are this backup's
	// restore already; nothing is deleted, the workload comes back up.
	ev = e.restore(ready, "rs-ip2", inPlace)
	if again, ok := ev.Payload.(*events.Restored); !ok || len(again.KeptVolumes) != 0 {
		t.Fatalf("second in-place restore: %s %+v", ev.Kind(), ev.Payload)
	}
	if d, _ := e.kube.AppsV1().Deployments(namespace).Get(t.Context(), "db", metav1.GetOptions{}); *d.Spec.Replicas != 1 {
		t.Errorf("replicas %d after the second restore, want 1", *d.Spec.Replicas)
	}
}

// A failure before any claim is deleted leaves the workload as it was: its
// replicas, no record, its own claims.
func TestRestoreInPlaceFailingBeforeDeletingScalesBack(t *testing.T) {
	// No volume for "wal": it cannot be set to Retain, so nothing may be deleted.
	e := start(t, options{objects: append(twoClaims(), volumes("data")...), ctrl: snapshottest.ControllerOptions{ReadyAtCut: true}, kubeReactors: []kubeReactor{bindOnCreate}})
	ready := e.backupReady("bk-ipf")
	e.stopPodsOnScaleDown(t.Context())

	ev := e.restore(ready, "rs-ipf", inPlace)
	f, ok := ev.Payload.(*events.RestoreFailed)
	if !ok || !f.InPlace || !strings.Contains(f.Reason, "pv-shop-wal") || !strings.Contains(f.Reason, "nothing was deleted") {
		t.Fatalf("got %s %+v, want restore-failed naming the missing volume, nothing deleted", ev.Kind(), ev.Payload)
	}
	t.Logf("reason: %s", f.Reason)
	d, err := e.kube.AppsV1().Deployments(namespace).Get(t.Context(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Annotations[snapshot.AnnotationInPlaceRestore] != "" {
		t.Errorf("deployment after: replicas %v, annotations %v: want 1 and no record", d.Spec.Replicas, d.Annotations)
	}
	for _, c := range []string{"data", "wal"} {
		pvc, err := e.kube.CoreV1().PersistentVolumeClaims(namespace).Get(t.Context(), c, metav1.GetOptions{})
		if err != nil || pvc.Spec.DataSource != nil {
			t.Errorf("claim %s: %v, dataSource %+v: want the original", c, err, pvc.Spec.DataSource)
		}
	}
}
