package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// LabelVolumeGroup is put on the claims of a workload snapshotted as a
// group: a VolumeGroupSnapshot selects its volumes by label, and the value,
// a hash of the workload and its sorted claims, selects exactly the claims
// the workload's pods mount now. It is written once, the first time, and
// again only when the set of claims changes.
const LabelVolumeGroup = "freezeframe.io/volume-group"

// groupSnapshotGV is the VolumeGroupSnapshot API the snapshot controller
// v8.7 serves and reconciles.
const groupSnapshotGV = "groupsnapshot.storage.k8s.io/v1"

// GroupSnapshotName is the VolumeGroupSnapshot name for one backup:
// deterministic, so a redelivered Quiesced finds its group again.
func GroupSnapshotName(backupID string) string {
	return "ffg-" + shortHash(backupID) + "-" + strings.TrimRight(trimTo(strings.ToLower(backupID), maxNameLen-15), "-_.")
}

func trimTo(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, s)
	if len(s) > n {
		return s[:n]
	}
	return s
}

// volumeGroupValue is the LabelVolumeGroup value for a workload's claims.
func volumeGroupValue(w events.Workload, claims []string) string {
	sorted := append([]string(nil), claims...)
	sort.Strings(sorted)
	return "g-" + shortHash(w.Key()+"|"+strings.Join(sorted, ","))
}

func groupSnapshotStatus(obj any) (snapStatus, bool) {
	g, ok := obj.(*groupv1.VolumeGroupSnapshot)
	if !ok {
		return snapStatus{}, false
	}
	out := snapStatus{namespace: g.Namespace, name: g.Name, uid: g.UID}
	if g.Spec.VolumeGroupSnapshotClassName != nil {
		out.class = *g.Spec.VolumeGroupSnapshotClassName
	}
	if st := g.Status; st != nil {
		if st.CreationTime != nil {
			out.cutAt = st.CreationTime.Time
		}
		out.ready = st.ReadyToUse != nil && *st.ReadyToUse
		out.errMsg = errorMessage(st.Error)
	}
	return out, true
}

func newGroupSnapshotWatch(api SnapshotAPI, log *slog.Logger) (*cutWatch, error) {
	inf := newInformer(api, &groupv1.VolumeGroupSnapshot{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = LabelBackupID
			return api.GroupsnapshotV1().VolumeGroupSnapshots(metav1.NamespaceAll).List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = LabelBackupID
			return api.GroupsnapshotV1().VolumeGroupSnapshots(metav1.NamespaceAll).Watch(ctx, o)
		})
	w, err := newCutWatch(inf, groupSnapshotStatus, "volumegroupsnapshot", log)
	if err != nil {
		return nil, err
	}
	contents := newInformer(api, &groupv1.VolumeGroupSnapshotContent{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return api.GroupsnapshotV1().VolumeGroupSnapshotContents().List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return api.GroupsnapshotV1().VolumeGroupSnapshotContents().Watch(ctx, o)
		})
	if err := w.followContents(contents, groupSnapshotContentStatus); err != nil {
		return nil, fmt.Errorf("volumegroupsnapshotcontent watch: %w", err)
	}
	return w, nil
}

// groupSnapshotContentStatus reports a VolumeGroupSnapshotContent as the
// status of the VolumeGroupSnapshot it is bound to. The CSI sidecar sets its
// creationTime as soon as the driver has cut the group; the snapshot
// controller copies it to the VolumeGroupSnapshot only after it has made
// every member, seconds later.
func groupSnapshotContentStatus(obj any) (snapStatus, bool) {
	c, ok := obj.(*groupv1.VolumeGroupSnapshotContent)
	if !ok {
		return snapStatus{}, false
	}
	ref := c.Spec.VolumeGroupSnapshotRef
	out := snapStatus{namespace: ref.Namespace, name: ref.Name, uid: ref.UID}
	if st := c.Status; st != nil {
		if st.CreationTime != nil {
			out.cutAt = st.CreationTime.Time
		}
		// Readiness is taken from the group itself, once the controller has
		// made the members the backup is restored from.
		out.errMsg = errorMessage(st.Error)
	}
	return out, true
}

// labelClaims makes the workload's claims, and only those, carry its
// volume-group label. Claims already labelled cost nothing (the index's
// cache says so); the first group backup of a workload patches each claim.
// A claim of the workload that carries another group's value is patched
// too; a claim elsewhere that still carries this value (it left the
// workload) cannot, since the value changes with the set of claims.
func (s *Service) labelClaims(ctx context.Context, namespace string, claims []string, value string) error {
	errs := make([]error, len(claims))
	done := make(chan int, len(claims))
	for i, name := range claims {
		go func() {
			defer func() { done <- i }()
			if s.storage.claimLabel(namespace, name, LabelVolumeGroup) == value {
				return
			}
			patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, LabelVolumeGroup, value)
			_, err := s.deps.Kube.CoreV1().PersistentVolumeClaims(namespace).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			if err != nil {
				errs[i] = classify(fmt.Errorf("label persistentvolumeclaim %s/%s for a group snapshot: %w", namespace, name, err))
			}
		}()
	}
	for range claims {
		<-done
	}
	return joinClassified(errs)
}

// newGroupSnapshot is the VolumeGroupSnapshot of the claims labelled value.
func newGroupSnapshot(ref events.BackupRef, kind, class, value string) *groupv1.VolumeGroupSnapshot {
	return &groupv1.VolumeGroupSnapshot{
		ObjectMeta: metav1.ObjectMeta{
			Name:        GroupSnapshotName(ref.BackupID),
			Namespace:   ref.Workload.Namespace,
			Labels:      ownLabels(ref, kind),
			Annotations: map[string]string{AnnotationBackupID: ref.BackupID},
		},
		Spec: groupv1.VolumeGroupSnapshotSpec{
			Source: groupv1.VolumeGroupSnapshotSource{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelVolumeGroup: value}},
			},
			VolumeGroupSnapshotClassName: &class,
		},
	}
}

// createGroup creates the backup's VolumeGroupSnapshot, or finds the one an
// earlier delivery created.
func (s *Service) createGroup(ctx context.Context, g *groupv1.VolumeGroupSnapshot, backupID string) (_ *groupv1.VolumeGroupSnapshot, err error) {
	ctx, span := s.metrics.tracer.Start(ctx, "create volumegroupsnapshot", trace.WithAttributes(
		attribute.String("freezeframe.backup_id", backupID), attribute.String("k8s.namespace.name", g.Namespace), attribute.String("freezeframe.group", g.Name)))
	defer func() { endSpan(span, err) }()
	api := s.deps.Snapshots.GroupsnapshotV1().VolumeGroupSnapshots(g.Namespace)
	created, err := api.Create(ctx, g, metav1.CreateOptions{})
	if err == nil {
		return created, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, classify(fmt.Errorf("create volumegroupsnapshot %s/%s: %w", g.Namespace, g.Name, err))
	}
	existing, err := api.Get(ctx, g.Name, metav1.GetOptions{})
	if err != nil {
		return nil, classify(fmt.Errorf("get existing volumegroupsnapshot %s/%s: %w", g.Namespace, g.Name, err))
	}
	if existing.Labels[LabelBackupID] != LabelValue(backupID) {
		return nil, fmt.Errorf("volumegroupsnapshot %s/%s: %w", g.Namespace, g.Name, ErrNotOwned)
	}
	return existing, nil
}

// groupMembers lists the VolumeSnapshots the snapshot controller made for a
// group, by claim, and labels them as the backup's, so that users find them
// by the backup id like any other snapshot of freezeframe. They carry an
// owner reference to the group and none of our labels, so they are read
// once, when the group is ready, outside any freeze.
func (s *Service) groupMembers(ctx context.Context, ref events.BackupRef, group string) (map[string]string, error) {
	ns := ref.Workload.Namespace
	g, err := s.deps.Snapshots.GroupsnapshotV1().VolumeGroupSnapshots(ns).Get(ctx, group, metav1.GetOptions{})
	if err != nil {
		return nil, classify(fmt.Errorf("get volumegroupsnapshot %s/%s: %w", ns, group, err))
	}
	list, err := s.deps.Snapshots.SnapshotV1().VolumeSnapshots(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, classify(fmt.Errorf("list volumesnapshots of group %s/%s: %w", ns, group, err))
	}
	kind, err := events.NormalizeKind(ref.Workload.Kind)
	if err != nil {
		return nil, events.Permanent(err)
	}
	labels, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"labels":      ownLabels(ref, kind),
		"annotations": map[string]string{AnnotationBackupID: ref.BackupID},
	}})
	if err != nil {
		return nil, err
	}
	members := map[string]string{}
	for _, vs := range list.Items {
		for _, o := range vs.OwnerReferences {
			if o.UID != g.UID || o.Kind != "VolumeGroupSnapshot" || vs.Spec.Source.PersistentVolumeClaimName == nil {
				continue
			}
			members[*vs.Spec.Source.PersistentVolumeClaimName] = vs.Name
			if vs.Labels[LabelBackupID] != "" {
				continue
			}
			if _, err := s.deps.Snapshots.SnapshotV1().VolumeSnapshots(ns).Patch(ctx, vs.Name, types.MergePatchType, labels, metav1.PatchOptions{}); err != nil {
				return nil, classify(fmt.Errorf("label member volumesnapshot %s/%s of group %s: %w", ns, vs.Name, group, err))
			}
		}
	}
	if len(members) == 0 {
		return nil, fmt.Errorf("volumegroupsnapshot %s/%s is ready but has no member VolumeSnapshots", ns, group)
	}
	return members, nil
}

// joinClassified joins errs; the result is transient only when every error
// in it is.
func joinClassified(errs []error) error {
	err := errors.Join(errs...)
	if err == nil {
		return nil
	}
	for _, e := range errs {
		if e != nil && !isTransient(e) {
			return err
		}
	}
	return &transientError{err}
}
