package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// In-place restore: the workload's own claims are remade from the snapshots.
//
// Design:
//   - Before anything changes, the workload's state is recorded on the
//     workload itself (AnnotationInPlaceRestore: the restore id, its
//     replicas, each claim's volume). A redelivered request reads it back
//     and goes on from where the cluster is, and scales the workload back to
//     the replicas it had, not to the 0 it finds. A record of another
//     restore id is another in-place restore not finished: refused.
//   - Nothing is deleted before every old volume's reclaim policy is Retain
//     (its previous policy kept in AnnotationReclaimPolicyBefore): from then
//     on, whatever fails, the old data stays in a Released volume that can be
//     bound again (docs/restore.md, "Roll back").
//   - A failure before the old claims are deleted scales the workload back
//     up: nothing has changed. After, the workload is left at 0 replicas:
//     starting it on some claims restored and some missing is worse than not
//     starting it. RestoreFailed lists the steps done and the old volumes.

// Annotations of an in-place restore.
const (
	// AnnotationInPlaceRestore, on the workload, records an in-place
	// restore under way (inPlaceRecord, JSON); removed when it scales the
	// workload back up.
	AnnotationInPlaceRestore = "freezeframe.io/in-place-restore"
	// AnnotationReclaimPolicyBefore, on an old volume, is its reclaim policy
	// before the restore set it to Retain.
	AnnotationReclaimPolicyBefore = "freezeframe.io/reclaim-policy-before-restore"
)

// ErrRestoreInProgress is an in-place restore refused because another one
// of the workload has not finished.
var ErrRestoreInProgress = errors.New("another in-place restore of the workload has not finished")

type inPlaceRecord struct {
	RestoreID string `json:"restoreId"`
	Replicas  int32  `json:"replicas"`
	// Volumes is each claim's volume before the restore.
	Volumes map[string]string `json:"volumes"`
}

// inPlace is one attempt at an in-place restore.
type inPlace struct {
	s   *Service
	r   *events.RestoreRequested
	log *slog.Logger

	steps []events.RestoreStep
	kept  []string
	// deleted: an old claim was deleted; no scaling back up after that.
	deleted bool
	// rec is the workload's record, once written: until an old claim is
	// deleted, a failure scales the workload back to its replicas and
	// removes it.
	rec *inPlaceRecord
}

func (s *Service) handleRestoreInPlace(ctx context.Context, r *events.RestoreRequested, log *slog.Logger) error {
	start := time.Now()
	ip := &inPlace{s: s, r: r, log: log.With("in_place", true)}
	consistent, claims, err := ip.run(ctx)
	if err != nil {
		d, _ := events.DeliveryOf(ctx)
		if !d.Last() && (ctx.Err() != nil || isTransient(err)) {
			ip.log.WarnContext(ctx, "in-place restore attempt failed, will retry", "attempt", d.Attempt, "err", err)
			return err
		}
		ip.log.WarnContext(ctx, "in-place restore failed", "err", err)
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), failurePublishTimeout)
		defer cancel()
		why := err.Error()
		switch {
		case ip.deleted:
			why += fmt.Sprintf("; %s is left at 0 replicas, the old volumes are kept (Retain): %s", r.Workload, strings.Join(ip.kept, ", "))
		case ip.rec != nil:
			if serr := ip.scaleBack(pctx); serr != nil {
				why += fmt.Sprintf("; nothing was deleted, but scaling %s back up failed: %v", r.Workload, serr)
			} else {
				why += fmt.Sprintf("; nothing was deleted: %s scaled back to %d", r.Workload, ip.rec.Replicas)
			}
		}
		if _, _, perr := s.pub.Publish(pctx, &events.RestoreFailed{BackupRef: r.BackupRef, RestoreID: r.RestoreID,
			TargetNamespace: r.Target(), Reason: reason(errors.New(why)), Claims: claims,
			InPlace: true, Steps: ip.steps, KeptVolumes: ip.kept}); perr != nil {
			return fmt.Errorf("publish restore failed after %w: %w", err, perr)
		}
		return nil
	}
	out := &events.Restored{BackupRef: r.BackupRef, RestoreID: r.RestoreID, TargetNamespace: r.Target(), Claims: claims,
		Consistent: consistent, Took: events.Duration(time.Since(start)), InPlace: true, Steps: ip.steps, KeptVolumes: ip.kept}
	if _, _, err := s.pub.Publish(ctx, out); err != nil {
		return fmt.Errorf("publish restored: %w", err)
	}
	ip.log.InfoContext(ctx, "restored in place", "claims", len(claims), "kept_volumes", ip.kept, "took", time.Since(start))
	return nil
}

// step records a step done, and publishes it (RestoreProgress) as it
// happens; a step not published is still in the result event.
func (ip *inPlace) step(ctx context.Context, name, detail string) {
	st := events.RestoreStep{Step: name, Detail: detail, At: time.Now().UTC()}
	ip.steps = append(ip.steps, st)
	ip.log.InfoContext(ctx, "in-place restore step", "step", name, "detail", detail)
	if _, _, err := ip.s.pub.Publish(ctx, &events.RestoreProgress{BackupRef: ip.r.BackupRef, RestoreID: ip.r.RestoreID, RestoreStep: st}); err != nil {
		ip.log.WarnContext(ctx, "publish restore step", "step", name, "err", err)
	}
}

func (ip *inPlace) run(ctx context.Context) (bool, []events.RestoredClaim, error) {
	s, r := ip.s, ip.r
	ns := r.Workload.Namespace
	consistent, err := s.restorable(ctx, r)
	if err != nil {
		return false, nil, err
	}
	// Every snapshot checked before anything is touched.
	snaps := make([]*snapv1.VolumeSnapshot, len(r.Volumes))
	for i, v := range r.Volumes {
		if snaps[i], err = s.sourceSnapshot(ctx, r.BackupID, ns, v); err != nil {
			return consistent, nil, err
		}
	}
	wl, err := ip.workload(ctx)
	if err != nil {
		return consistent, nil, err
	}

	// The record, before anything changes.
	old := map[string]*corev1.PersistentVolumeClaim{}
	rec := &inPlaceRecord{RestoreID: r.RestoreID, Replicas: wl.replicas, Volumes: map[string]string{}}
	if raw, ok := wl.annotations[AnnotationInPlaceRestore]; ok {
		var got inPlaceRecord
		if err := json.Unmarshal([]byte(raw), &got); err != nil {
			return consistent, nil, fmt.Errorf("%s %s: annotation %s: %w", r.Workload.Kind, r.Workload, AnnotationInPlaceRestore, err)
		}
		if got.RestoreID != r.RestoreID {
			return consistent, nil, fmt.Errorf("%s: %w (restore %s; annotation %s)", r.Workload, ErrRestoreInProgress, got.RestoreID, AnnotationInPlaceRestore)
		}
		rec = &got
		if rec.Volumes == nil {
			rec.Volumes = map[string]string{}
		}
	}
	for _, v := range r.Volumes {
		pvc, err := s.deps.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, v.PVC, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue // deleted by an earlier attempt (its volume is in the record), or never there
		case err != nil:
			return consistent, nil, classify(fmt.Errorf("get persistentvolumeclaim %s/%s: %w", ns, v.PVC, err))
		case restoredFrom(pvc, r.BackupID, ns+"/"+v.PVC):
			continue // made by an earlier attempt
		case pvc.Spec.VolumeName == "":
			return consistent, nil, fmt.Errorf("persistentvolumeclaim %s/%s is not bound: no volume to keep", ns, v.PVC)
		}
		old[v.PVC] = pvc
		rec.Volumes[v.PVC] = pvc.Spec.VolumeName
	}
	if err := ip.patchWorkload(ctx, map[string]any{"metadata": map[string]any{"annotations": map[string]any{AnnotationInPlaceRestore: mustJSON(rec)}}}); err != nil {
		return consistent, nil, err
	}
	ip.rec = rec

	// 1. Every old volume Retain; the claims' shapes, from the claim or,
	// once it is gone, from its volume.
	shapes := map[string]*corev1.PersistentVolumeClaimSpec{}
	var retained []string
	for _, v := range r.Volumes {
		pvName := rec.Volumes[v.PVC]
		if pvName == "" {
			continue
		}
		pv, was, err := ip.retain(ctx, pvName)
		if err != nil {
			return consistent, nil, err
		}
		ip.kept = append(ip.kept, pvName)
		retained = append(retained, fmt.Sprintf("%s (pvc %s, was %s)", pvName, v.PVC, was))
		if c, ok := old[v.PVC]; ok {
			shapes[v.PVC] = &c.Spec
		} else {
			shapes[v.PVC] = &corev1.PersistentVolumeClaimSpec{AccessModes: pv.Spec.AccessModes, VolumeMode: pv.Spec.VolumeMode,
				StorageClassName: &pv.Spec.StorageClassName,
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: pv.Spec.Capacity[corev1.ResourceStorage]}}}
		}
	}
	ip.step(ctx, events.RestoreStepRetain, strings.Join(retained, ", "))

	// 2. Scaled to 0, every pod gone.
	if err := ip.patchWorkload(ctx, map[string]any{"spec": map[string]any{"replicas": 0}}); err != nil {
		return consistent, nil, err
	}
	if err := ip.waitNoPods(ctx, wl.selector); err != nil {
		return consistent, nil, err
	}
	ip.step(ctx, events.RestoreStepScaleDown, fmt.Sprintf("%s from %d to 0 replicas, its pods gone", r.Workload, rec.Replicas))

	// 3. The old claims deleted (their volumes stay, Released).
	var deleted []string
	for _, v := range r.Volumes {
		c, ok := old[v.PVC]
		if !ok {
			continue
		}
		ip.deleted = true
		uid := c.UID
		err := s.deps.Kube.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, v.PVC, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return consistent, nil, classify(fmt.Errorf("delete persistentvolumeclaim %s/%s: %w", ns, v.PVC, err))
		}
		deleted = append(deleted, v.PVC)
	}
	if err := ip.waitGone(ctx, deleted); err != nil {
		return consistent, nil, err
	}
	ip.deleted = ip.deleted || len(rec.Volumes) > 0
	ip.step(ctx, events.RestoreStepDeleteClaims, strings.Join(deleted, ", "))

	// 4. The claims made again from the snapshots, and bound.
	claims := make([]events.RestoredClaim, 0, len(r.Volumes))
	for i, v := range r.Volumes {
		pvc, err := s.restoreClaim(ctx, r, v, snaps[i], ns, snaps[i].Name, shapes[v.PVC])
		if err != nil {
			return consistent, claims, err
		}
		claims = append(claims, events.RestoredClaim{Namespace: ns, Name: pvc.Name, PVC: v.PVC, Snapshot: snaps[i].Name})
	}
	if err := s.waitBound(ctx, claims); err != nil {
		return consistent, claims, err
	}
	var made []string
	for _, c := range claims {
		made = append(made, c.Name+"←"+c.Snapshot)
	}
	ip.step(ctx, events.RestoreStepCreateClaims, strings.Join(made, ", "))

	// 5. Scaled back up, the record removed.
	if err := ip.scaleBack(ctx); err != nil {
		return consistent, claims, err
	}
	ip.step(ctx, events.RestoreStepScaleUp, fmt.Sprintf("%s to %d replicas", r.Workload, rec.Replicas))
	return consistent, claims, nil
}

type scalable struct {
	replicas    int32
	annotations map[string]string
	selector    labels.Selector
}

func (ip *inPlace) workload(ctx context.Context) (*scalable, error) {
	w := ip.r.Workload
	apps := ip.s.deps.Kube.AppsV1()
	var (
		meta     metav1.ObjectMeta
		replicas *int32
		sel      *metav1.LabelSelector
		err      error
	)
	switch w.Kind {
	case events.KindDeployment:
		d, gerr := apps.Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err = gerr; err == nil {
			meta, replicas, sel = d.ObjectMeta, d.Spec.Replicas, d.Spec.Selector
		}
	case events.KindStatefulSet:
		st, gerr := apps.StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err = gerr; err == nil {
			meta, replicas, sel = st.ObjectMeta, st.Spec.Replicas, st.Spec.Selector
		}
	default:
		return nil, fmt.Errorf("restore %s in place: only a %s or a %s can be scaled", w, events.KindDeployment, events.KindStatefulSet)
	}
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("restore %s in place: not found", w)
	}
	if err != nil {
		return nil, classify(fmt.Errorf("get %s: %w", w, err))
	}
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || selector.Empty() {
		return nil, fmt.Errorf("restore %s in place: selector %v: %v", w, sel, err)
	}
	out := &scalable{replicas: 1, annotations: meta.Annotations, selector: selector}
	if replicas != nil {
		out.replicas = *replicas
	}
	return out, nil
}

func (ip *inPlace) patchWorkload(ctx context.Context, patch map[string]any) error {
	w := ip.r.Workload
	data := []byte(mustJSON(patch))
	apps := ip.s.deps.Kube.AppsV1()
	var err error
	if w.Kind == events.KindStatefulSet {
		_, err = apps.StatefulSets(w.Namespace).Patch(ctx, w.Name, types.MergePatchType, data, metav1.PatchOptions{})
	} else {
		_, err = apps.Deployments(w.Namespace).Patch(ctx, w.Name, types.MergePatchType, data, metav1.PatchOptions{})
	}
	if err != nil {
		return classify(fmt.Errorf("patch %s: %w", w, err))
	}
	return nil
}

// scaleBack scales the workload to its recorded replicas and removes the
// record.
func (ip *inPlace) scaleBack(ctx context.Context) error {
	return ip.patchWorkload(ctx, map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{AnnotationInPlaceRestore: nil}},
		"spec":     map[string]any{"replicas": ip.rec.Replicas},
	})
}

// retain sets volume name's reclaim policy to Retain, and returns the volume
// and its policy before.
func (ip *inPlace) retain(ctx context.Context, name string) (*corev1.PersistentVolume, string, error) {
	api := ip.s.deps.Kube.CoreV1().PersistentVolumes()
	pv, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, "", classify(fmt.Errorf("get persistentvolume %s: %w", name, err))
	}
	was := string(pv.Spec.PersistentVolumeReclaimPolicy)
	if before, ok := pv.Annotations[AnnotationReclaimPolicyBefore]; ok {
		was = before // set by an earlier attempt
	}
	if pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimRetain {
		return pv, was, nil
	}
	patch := mustJSON(map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{AnnotationReclaimPolicyBefore: was}},
		"spec":     map[string]any{"persistentVolumeReclaimPolicy": corev1.PersistentVolumeReclaimRetain},
	})
	if pv, err = api.Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return nil, "", classify(fmt.Errorf("set persistentvolume %s to Retain: %w", name, err))
	}
	return pv, was, nil
}

// waitNoPods waits until no pod of the workload is left (terminating pods
// count: they may still write), at most RestoreBindTimeout.
func (ip *inPlace) waitNoPods(ctx context.Context, sel labels.Selector) error {
	ns := ip.r.Workload.Namespace
	return ip.poll(ctx, "pods of "+ip.r.Workload.String()+" gone", func() (bool, error) {
		pods, err := ip.s.deps.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return false, classify(fmt.Errorf("list pods of %s: %w", ip.r.Workload, err))
		}
		return len(pods.Items) == 0, nil
	})
}

// waitGone waits until the claims named are deleted (a claim in use by a pod
// is kept until the pod is gone).
func (ip *inPlace) waitGone(ctx context.Context, names []string) error {
	ns := ip.r.Workload.Namespace
	return ip.poll(ctx, "old claims "+strings.Join(names, ", ")+" deleted", func() (bool, error) {
		for _, n := range names {
			_, err := ip.s.deps.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, n, metav1.GetOptions{})
			if err == nil {
				return false, nil
			}
			if !apierrors.IsNotFound(err) {
				return false, classify(fmt.Errorf("get persistentvolumeclaim %s/%s: %w", ns, n, err))
			}
		}
		return true, nil
	})
}

func (ip *inPlace) poll(ctx context.Context, what string, done func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, ip.s.cfg.RestoreBindTimeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := done()
		if err != nil && ctx.Err() == nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("wait for %s: not within %s", what, ip.s.cfg.RestoreBindTimeout)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings and numbers
	}
	return string(b)
}
