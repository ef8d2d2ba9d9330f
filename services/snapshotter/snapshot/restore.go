package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// Restore: a RestoreRequested becomes one PersistentVolumeClaim per
// snapshot of the backup, each with a dataSource naming a VolumeSnapshot,
// and a Restored once every claim is bound.
//
// Design:
//   - Names are deterministic (the request names each claim; a copied
//     snapshot's names derive from the backup's), so a redelivered request
//     finds what an earlier attempt created and takes it over; an object of
//     that name that is not this backup's restore is never touched.
//   - A claim's dataSource must name a VolumeSnapshot in the claim's own
//     namespace. Restoring into another namespace therefore copies the
//     snapshot there as a pre-provisioned one: a VolumeSnapshotContent
//     naming the same storage snapshot (snapshotHandle), deletionPolicy
//     Retain so that deleting the copy never deletes the backup's data,
//     and a VolumeSnapshot bound to it in the target namespace. This needs
//     nothing from the cluster beyond the snapshot CRDs (cross-namespace
//     data sources are an alpha feature gate with ReferenceGrants).
//   - A backup whose freeze did not end well (no FreezeEnd, or one that says
//     failed) is refused unless the request allows it: its snapshots may
//     hold what the application wrote after it was resumed.
//   - Nothing is frozen meanwhile: a restore has its own consumer and never
//     delays a cut.

// RestoreDurable is the consumer of RestoreRequested events.
const RestoreDurable = events.DurableSnapshotterRestore

// Labels and annotations on what a restore creates. They are not
// LabelBackupID: the catalog and retention count what carries that label as
// the backup's own snapshots.
const (
	LabelRestoredFrom       = "freezeframe.io/restored-from"
	LabelRestoreID          = "freezeframe.io/restore-id"
	AnnotationRestoredFrom  = "freezeframe.io/restored-from"
	AnnotationRestoreSource = "freezeframe.io/restore-source"
)

var (
	// ErrInconsistent is a restore refused because the backup's freeze did
	// not end well (or its end is not known).
	ErrInconsistent = errors.New("backup is not consistent")
	// ErrClaimNotOwned is a claim, snapshot or content of the name a
	// restore would use that is not this backup's restore.
	ErrClaimNotOwned = errors.New("exists and is not a restore of this backup")
)

// restoreLabels labels what a restore of ref creates.
func restoreLabels(ref events.BackupRef, restoreID string) map[string]string {
	return map[string]string{
		LabelRestoredFrom: LabelValue(ref.BackupID),
		LabelRestoreID:    LabelValue(restoreID),
		LabelManagedBy:    "freezeframe",
	}
}

// restoredFrom reports whether obj was made by a restore of backupID from
// source (namespace/name of what it was made from).
func restoredFrom(obj metav1.Object, backupID, source string) bool {
	a := obj.GetAnnotations()
	return a[AnnotationRestoredFrom] == backupID && a[AnnotationRestoreSource] == source
}

// RestoreContentName is the VolumeSnapshotContent that copies snapshot
// snapNS/snap of a backup into namespace target.
func RestoreContentName(target, snapNS, snap string) string {
	return "ffr-" + shortHash(target+"/"+snapNS+"/"+snap) + "-" + shortHash(snap)
}

func (s *Service) handleRestore(ctx context.Context, ev events.Event) error {
	r, ok := ev.Payload.(*events.RestoreRequested)
	if !ok {
		return events.Permanent(fmt.Errorf("handle %s event: want restore-requested", ev.Kind()))
	}
	log := s.log.With("backup_id", r.BackupID, "restore_id", r.RestoreID, "workload", r.Workload.String(), "target_namespace", r.Target())
	if r.InPlace {
		return s.handleRestoreInPlace(ctx, r, log)
	}
	start := time.Now()
	consistent, claims, err := s.restore(ctx, r, log)
	if err != nil {
		d, _ := events.DeliveryOf(ctx)
		if !d.Last() && (ctx.Err() != nil || isTransient(err)) {
			log.WarnContext(ctx, "restore attempt failed, will retry", "attempt", d.Attempt, "err", err)
			return err
		}
		log.WarnContext(ctx, "restore failed", "err", err)
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), failurePublishTimeout)
		defer cancel()
		if _, _, perr := s.pub.Publish(pctx, &events.RestoreFailed{BackupRef: r.BackupRef, RestoreID: r.RestoreID,
			TargetNamespace: r.Target(), Reason: reason(err), Claims: claims}); perr != nil {
			return fmt.Errorf("publish restore failed after %w: %w", err, perr)
		}
		return nil
	}
	out := &events.Restored{BackupRef: r.BackupRef, RestoreID: r.RestoreID, TargetNamespace: r.Target(), Claims: claims,
		Consistent: consistent, Took: events.Duration(time.Since(start))}
	if _, _, err := s.pub.Publish(ctx, out); err != nil {
		return fmt.Errorf("publish restored: %w", err)
	}
	log.InfoContext(ctx, "restored", "claims", len(claims), "took", time.Since(start), "consistent", consistent)
	return nil
}

// restore makes the claims of r and waits until each is bound. It returns
// whether the backup was consistent and the claims as far as they got.
func (s *Service) restore(ctx context.Context, r *events.RestoreRequested, log *slog.Logger) (bool, []events.RestoredClaim, error) {
	consistent, err := s.restorable(ctx, r)
	if err != nil {
		return false, nil, err
	}
	srcNS, target := r.Workload.Namespace, r.Target()
	claims := make([]events.RestoredClaim, 0, len(r.Volumes))
	for _, v := range r.Volumes {
		snap, err := s.sourceSnapshot(ctx, r.BackupID, srcNS, v)
		if err != nil {
			return consistent, claims, err
		}
		dataSource := snap.Name
		if target != srcNS {
			if dataSource, err = s.copySnapshot(ctx, r, snap, target); err != nil {
				return consistent, claims, err
			}
		}
		pvc, err := s.restoreClaim(ctx, r, v, snap, target, dataSource, nil)
		if err != nil {
			return consistent, claims, err
		}
		log.DebugContext(ctx, "claim created", "claim", pvc.Name, "snapshot", dataSource)
		claims = append(claims, events.RestoredClaim{Namespace: target, Name: pvc.Name, PVC: v.PVC, Snapshot: dataSource})
	}
	err = s.waitBound(ctx, claims)
	return consistent, claims, err
}

// sourceSnapshot reads the backup's snapshot of v and checks that it is the
// backup's, and ready.
func (s *Service) sourceSnapshot(ctx context.Context, backupID, ns string, v events.RestoreVolume) (*snapv1.VolumeSnapshot, error) {
	snap, err := s.deps.Snapshots.SnapshotV1().VolumeSnapshots(ns).Get(ctx, v.Snapshot, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("volumesnapshot %s/%s of pvc %s: not found (pruned or deleted)", ns, v.Snapshot, v.PVC)
	}
	if err != nil {
		return nil, classify(fmt.Errorf("get volumesnapshot %s/%s: %w", ns, v.Snapshot, err))
	}
	if !ownedBy(snap, backupID, v.PVC) {
		return nil, fmt.Errorf("volumesnapshot %s/%s is not backup %s's snapshot of pvc %s", ns, v.Snapshot, backupID, v.PVC)
	}
	st := snap.Status
	switch {
	case snap.DeletionTimestamp != nil:
		return nil, fmt.Errorf("volumesnapshot %s/%s: being deleted", ns, v.Snapshot)
	case st != nil && st.Error != nil && st.Error.Message != nil:
		return nil, fmt.Errorf("volumesnapshot %s/%s: %s", ns, v.Snapshot, *st.Error.Message)
	case st == nil || st.ReadyToUse == nil || !*st.ReadyToUse || st.BoundVolumeSnapshotContentName == nil:
		return nil, &transientError{fmt.Errorf("volumesnapshot %s/%s: not ready to use yet", ns, v.Snapshot)}
	}
	return snap, nil
}

// copySnapshot makes snap usable as a data source in namespace target: a
// pre-provisioned VolumeSnapshotContent over the same storage snapshot
// (Retain) and a VolumeSnapshot of the same name bound to it. It returns
// the copy's name.
func (s *Service) copySnapshot(ctx context.Context, r *events.RestoreRequested, snap *snapv1.VolumeSnapshot, target string) (string, error) {
	api := s.deps.Snapshots.SnapshotV1()
	orig, err := api.VolumeSnapshotContents().Get(ctx, *snap.Status.BoundVolumeSnapshotContentName, metav1.GetOptions{})
	if err != nil {
		return "", classify(fmt.Errorf("get volumesnapshotcontent %s of %s/%s: %w", *snap.Status.BoundVolumeSnapshotContentName, snap.Namespace, snap.Name, err))
	}
	if orig.Status == nil || orig.Status.SnapshotHandle == nil {
		return "", &transientError{fmt.Errorf("volumesnapshotcontent %s: no snapshot handle yet", orig.Name)}
	}
	source := snap.Namespace + "/" + snap.Name
	meta := func(name, ns string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: restoreLabels(r.BackupRef, r.RestoreID),
			Annotations: map[string]string{AnnotationRestoredFrom: r.BackupID, AnnotationRestoreSource: source}}
	}
	handle := *orig.Status.SnapshotHandle
	content := &snapv1.VolumeSnapshotContent{
		ObjectMeta: meta(RestoreContentName(target, snap.Namespace, snap.Name), ""),
		Spec: snapv1.VolumeSnapshotContentSpec{
			VolumeSnapshotRef:       corev1.ObjectReference{Kind: "VolumeSnapshot", Namespace: target, Name: snap.Name},
			DeletionPolicy:          snapv1.VolumeSnapshotContentRetain,
			Driver:                  orig.Spec.Driver,
			VolumeSnapshotClassName: orig.Spec.VolumeSnapshotClassName,
			Source:                  snapv1.VolumeSnapshotContentSource{SnapshotHandle: &handle},
			SourceVolumeMode:        orig.Spec.SourceVolumeMode,
		},
	}
	if _, err := api.VolumeSnapshotContents().Create(ctx, content, metav1.CreateOptions{}); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return "", classify(fmt.Errorf("create volumesnapshotcontent %s: %w", content.Name, err))
		}
		got, err := api.VolumeSnapshotContents().Get(ctx, content.Name, metav1.GetOptions{})
		if err != nil {
			return "", classify(fmt.Errorf("get volumesnapshotcontent %s: %w", content.Name, err))
		}
		if !restoredFrom(got, r.BackupID, source) {
			return "", fmt.Errorf("volumesnapshotcontent %s: %w", content.Name, ErrClaimNotOwned)
		}
	}
	contentName := content.Name
	copySnap := &snapv1.VolumeSnapshot{
		ObjectMeta: meta(snap.Name, target),
		Spec: snapv1.VolumeSnapshotSpec{
			Source:                  snapv1.VolumeSnapshotSource{VolumeSnapshotContentName: &contentName},
			VolumeSnapshotClassName: orig.Spec.VolumeSnapshotClassName,
		},
	}
	if _, err := api.VolumeSnapshots(target).Create(ctx, copySnap, metav1.CreateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("create volumesnapshot %s/%s: namespace %s not found: create it first", target, snap.Name, target)
		}
		if !apierrors.IsAlreadyExists(err) {
			return "", classify(fmt.Errorf("create volumesnapshot %s/%s: %w", target, snap.Name, err))
		}
		got, err := api.VolumeSnapshots(target).Get(ctx, snap.Name, metav1.GetOptions{})
		if err != nil {
			return "", classify(fmt.Errorf("get volumesnapshot %s/%s: %w", target, snap.Name, err))
		}
		if !restoredFrom(got, r.BackupID, source) {
			return "", fmt.Errorf("volumesnapshot %s/%s: %w", target, snap.Name, ErrClaimNotOwned)
		}
	}
	return snap.Name, nil
}

// restoreClaim creates the claim of v in target from data source snapshot
// dataSource, shaped like the backed-up claim where it still exists.
//
// shape, when not nil, is the spec to copy instead of the backed-up claim's
// (an in-place restore has deleted that claim by then).
func (s *Service) restoreClaim(ctx context.Context, r *events.RestoreRequested, v events.RestoreVolume, snap *snapv1.VolumeSnapshot, target, dataSource string, shape *corev1.PersistentVolumeClaimSpec) (*corev1.PersistentVolumeClaim, error) {
	api := s.deps.Kube.CoreV1().PersistentVolumeClaims(target)
	source := r.Workload.Namespace + "/" + v.PVC
	spec := corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}}
	var orig *corev1.PersistentVolumeClaim
	err := error(nil)
	if shape != nil {
		orig = &corev1.PersistentVolumeClaim{Spec: *shape}
	} else {
		orig, err = s.deps.Kube.CoreV1().PersistentVolumeClaims(r.Workload.Namespace).Get(ctx, v.PVC, metav1.GetOptions{})
	}
	switch {
	case err == nil:
		spec.AccessModes = orig.Spec.AccessModes
		spec.StorageClassName = orig.Spec.StorageClassName
		spec.VolumeMode = orig.Spec.VolumeMode
		spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: orig.Spec.Resources.Requests[corev1.ResourceStorage]}
	case !apierrors.IsNotFound(err):
		return nil, classify(fmt.Errorf("get persistentvolumeclaim %s: %w", source, err))
	}
	if len(spec.AccessModes) == 0 {
		spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	// At least the snapshot's restore size: a claim smaller than its
	// snapshot is refused by the provisioner.
	size := spec.Resources.Requests[corev1.ResourceStorage]
	if st := snap.Status; st != nil && st.RestoreSize != nil && st.RestoreSize.Cmp(size) > 0 {
		size = *st.RestoreSize
	}
	if size.IsZero() {
		size = resource.MustParse("1Gi")
	}
	spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: size}
	group := snapv1.SchemeGroupVersion.Group
	spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: dataSource}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: v.Claim, Namespace: target, Labels: restoreLabels(r.BackupRef, r.RestoreID),
			Annotations: map[string]string{AnnotationRestoredFrom: r.BackupID, AnnotationRestoreSource: source}},
		Spec: spec,
	}
	created, err := api.Create(ctx, pvc, metav1.CreateOptions{})
	if err == nil {
		return created, nil
	}
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("create persistentvolumeclaim %s/%s: namespace %s not found: create it first", target, v.Claim, target)
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, classify(fmt.Errorf("create persistentvolumeclaim %s/%s: %w", target, v.Claim, err))
	}
	got, err := api.Get(ctx, v.Claim, metav1.GetOptions{})
	if err != nil {
		return nil, classify(fmt.Errorf("get persistentvolumeclaim %s/%s: %w", target, v.Claim, err))
	}
	if !restoredFrom(got, r.BackupID, source) {
		return nil, fmt.Errorf("persistentvolumeclaim %s/%s: %w", target, v.Claim, ErrClaimNotOwned)
	}
	return got, nil
}

// waitBound waits until every claim is bound, or waits for its first
// consumer (its StorageClass binds it only then), filling in each claim's
// volume; at most RestoreBindTimeout.
func (s *Service) waitBound(ctx context.Context, claims []events.RestoredClaim) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RestoreBindTimeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		pending := 0
		for i := range claims {
			c := &claims[i]
			if c.Volume != "" || c.WaitsForConsumer {
				continue
			}
			pvc, err := s.deps.Kube.CoreV1().PersistentVolumeClaims(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
			if err != nil {
				if ctx.Err() != nil {
					pending++
					continue
				}
				return classify(fmt.Errorf("get persistentvolumeclaim %s/%s: %w", c.Namespace, c.Name, err))
			}
			switch pvc.Status.Phase {
			case corev1.ClaimBound:
				c.Volume, c.BoundAt = pvc.Spec.VolumeName, time.Now().UTC()
				if q, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok {
					c.Capacity = q.String()
				}
				continue
			case corev1.ClaimLost:
				return fmt.Errorf("persistentvolumeclaim %s/%s: lost its volume", c.Namespace, c.Name)
			}
			if s.waitsForConsumer(ctx, pvc) {
				c.WaitsForConsumer = true
				continue
			}
			pending++
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%d claim(s) not bound within %s: see kubectl describe pvc -n %s -l %s", pending, s.cfg.RestoreBindTimeout, claims[0].Namespace, LabelRestoreID)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// waitsForConsumer reports whether pvc's StorageClass binds it only once a
// pod uses it.
func (s *Service) waitsForConsumer(ctx context.Context, pvc *corev1.PersistentVolumeClaim) bool {
	name := pvc.Spec.StorageClassName
	if name == nil || *name == "" {
		return false
	}
	sc, err := s.deps.Kube.StorageV1().StorageClasses().Get(ctx, *name, metav1.GetOptions{})
	return err == nil && sc.VolumeBindingMode != nil && *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer
}

// restorable reports whether r's backup is consistent (its freeze ended
// well), and refuses it when not unless r allows it.
func (s *Service) restorable(ctx context.Context, r *events.RestoreRequested) (bool, error) {
	consistent := false
	end, err := s.book.Ended(ctx, r.BackupRef)
	switch {
	case err == nil:
		consistent = end.Succeeded
	case errors.Is(err, events.ErrNotEnded):
	default:
		return false, &transientError{fmt.Errorf("read how backup %s ended: %w", r.BackupID, err)}
	}
	if !consistent && !r.AllowInconsistent {
		why := "its freeze has not ended, or its end is not known"
		if err == nil {
			why = "its freeze ended in failure: " + end.Reason
		}
		return false, fmt.Errorf("restore backup %s: %w: %s (allow it with --allow-inconsistent)", r.BackupID, ErrInconsistent, why)
	}
	return consistent, nil
}
