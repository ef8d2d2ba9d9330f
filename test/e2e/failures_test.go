package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/test/e2e/consistency"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// A Deployment scaled to zero has no pod to freeze: no retry can bring one, so the hooker
// fails the backup at once, without having frozen anything.
func TestMissingPodFails(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	app := &redisApp{Namespace: "nopod", Name: "cache", Blueprint: "redis-hooks"}
	app.deploy(t)
	scale := []byte(`{"spec":{"replicas":0}}`)
	if _, err := c.Client.AppsV1().Deployments(app.Namespace).Patch(t.Context(), app.Name, types.MergePatchType, scale, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "no pods of "+app.Name, func() (bool, error) {
		pods, err := c.Client.CoreV1().Pods(app.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: "app=" + app.Name})
		return err == nil && len(pods.Items) == 0, err
	})

	up := startUp(t)
	client := connect(t, up)
	start := time.Now()
	id := requestBackup(t, up, client, app.Namespace, events.KindDeployment, app.Name)
	evs := followBackup(t, client, id).wait(t, time.Minute)
	t.Logf("backup %s failed after %s:\n%s", id, time.Since(start).Round(time.Second), harness.Timeline(evs))
	requireKinds(t, evs, events.KindRequested, events.KindFailed)
	fail, _ := harness.Payload[events.BackupFailed](evs)
	if fail.Step != events.StepResolve || fail.ResumePending || !strings.Contains(fail.Reason, "no running pods") || !strings.Contains(fail.Reason, "scaled to 0") {
		t.Errorf("failed: step %s, resume pending %v, reason %q", fail.Step, fail.ResumePending, fail.Reason)
	}
	// The server behind the (gone) pod was never paused.
	if err := redisWrite(t.Context(), app.Server, "after-backup", 2*time.Second); err != nil {
		t.Fatalf("database not writable: %v", err)
	}
}

// A PVC that the running pod mounts is gone by the time of the backup: the snapshot of
// it cannot be cut, the backup fails, and the application is resumed.
func TestMissingPVCFails(t *testing.T) {
	t.Parallel()
	app := &redisApp{Namespace: "nopvc", Name: "cache", Blueprint: "redis-hooks", ExtraClaims: []string{"scratch"}}
	app.deploy(t)
	deleteClaim(t, app.Namespace, app.claim("scratch"))

	up := startUp(t)
	client := connect(t, up)
	id := requestBackup(t, up, client, app.Namespace, events.KindDeployment, app.Name)
	evs := followBackup(t, client, id).wait(t, 2*time.Minute)
	t.Logf("backup %s:\n%s", id, harness.Timeline(evs))
	if last := evs[len(evs)-1]; events.Succeeded(last) {
		t.Fatalf("backup succeeded without its volume %s", app.claim("scratch"))
	}
	fail, ok := harness.Payload[events.BackupFailed](evs)
	if !ok {
		t.Fatalf("no BackupFailed")
	}
	if !strings.Contains(fail.Reason, app.claim("scratch")) {
		t.Errorf("failure reason %q does not name the claim %s", fail.Reason, app.claim("scratch"))
	}
	if _, frozen := harness.Payload[events.Quiesced](evs); frozen {
		if r, ok := harness.Payload[events.Resumed](evs); !ok || r.Succeeded {
			t.Fatalf("frozen, then no failed resume: %+v", r)
		}
	}
	if err := redisWrite(t.Context(), app.Server, "after-backup", 2*time.Second); err != nil {
		t.Fatalf("database not writable: %v", err)
	}
}

// deleteClaim removes a claim a running pod still mounts. Kubernetes keeps such a claim
// (kubernetes.io/pvc-protection) until the pod is gone; here the finalizer is removed so
// that it really is missing, and its volume is kept (Retain) so nothing else changes.
func deleteClaim(t *testing.T, ns, name string) {
	t.Helper()
	c := sandbox.Shared(t)
	ctx := t.Context()
	pvc, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	retain := []byte(`{"spec":{"persistentVolumeReclaimPolicy":"` + string(corev1.PersistentVolumeReclaimRetain) + `"}}`)
	if _, err := c.Client.CoreV1().PersistentVolumes().Patch(ctx, pvc.Spec.VolumeName, types.MergePatchType, retain, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	noFinalizers := []byte(`{"metadata":{"finalizers":null}}`)
	waitFor(t, 30*time.Second, "claim "+ns+"/"+name+" gone", func() (bool, error) {
		_, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, name, types.MergePatchType, noFinalizers, metav1.PatchOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

// A pre-hook that fails after it paused writes: the backup fails before any snapshot,
// and the post-hook undoes the pause at once (not when CLIENT PAUSE's 300s run out).
func TestFailingHookResumes(t *testing.T) {
	t.Parallel()
	app := &redisApp{Namespace: "failhook", Name: "cache", Blueprint: "redis-hooks-failing", FailingHooks: true}
	app.deploy(t)

	up := startUp(t)
	client := connect(t, up)
	w, err := consistency.StartRedisWriter(t.Context(), addr(app.Server), app.Password, "k", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop(5 * time.Second)
	if err := w.WaitAcked(ctxTimeout(t, 30*time.Second), 50); err != nil {
		t.Fatal(err)
	}
	id := requestBackup(t, up, client, app.Namespace, events.KindDeployment, app.Name)
	evs := followBackup(t, client, id).wait(t, 2*time.Minute)
	t.Logf("backup %s:\n%s", id, harness.Timeline(evs))
	requireKinds(t, evs, events.KindRequested, events.KindFailed, events.KindResumed)
	if err := w.WaitAcked(ctxTimeout(t, 10*time.Second), w.Acked()+50); err != nil {
		t.Fatalf("writes after the resume: %v", err)
	}
	writes, err := w.Stop(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The pause took effect: a write sent before the failure was reported was held
	// until the post-hook ran after it.
	failedAt := evs[1].Time()
	var held *consistency.Write
	for i, wr := range writes {
		if wr.Issued.Before(failedAt) && wr.Acked.After(failedAt) && wr.Acked.Sub(wr.Issued) > 5*time.Millisecond {
			held = &writes[i]
		}
	}
	if held == nil {
		t.Fatalf("no write was held across the failure: the pre-hook did not pause writes")
	}
	t.Logf("write k:%d held %s by the pause, released by the post-hook", held.N, held.Acked.Sub(held.Issued))
	fail, _ := harness.Payload[events.BackupFailed](evs)
	r, _ := harness.Payload[events.Resumed](evs)
	if fail.Step != events.StepQuiesce || !fail.ResumePending || !strings.Contains(fail.Reason, "checkReplication") {
		t.Errorf("failed: step %s, resume pending %v, reason %q", fail.Step, fail.ResumePending, fail.Reason)
	}
	if r.Reason != events.ResumeAfterPrehookFailed || r.Succeeded || len(r.Hooks) == 0 {
		t.Errorf("resumed: reason %s, succeeded %v, hooks %+v", r.Reason, r.Succeeded, r.Hooks)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := redisWrite(ctx, app.Server, "after-backup", 2*time.Second); err != nil {
		t.Fatalf("database not writable after the failed backup: %v", err)
	}
}
