package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// ErrNotReady is returned when a snapshot is not ready to use within
// ReadyTimeout of its cut.
var ErrNotReady = errors.New("snapshots not ready")

// handleSnapshotted follows a backup's snapshots from the cut until they
// are ready to use, then publishes SnapshotReady and applies the workload's
// retention. Nothing is frozen any more: the hooker resumed the application
// on the same Snapshotted. A snapshot that reports an error, disappears or
// stays unready past ReadyTimeout fails the backup (step ready).
func (s *Service) handleSnapshotted(ctx context.Context, ev events.Event) error {
	sn, ok := ev.Payload.(*events.Snapshotted)
	if !ok {
		return events.Permanent(fmt.Errorf("handle %s event: the readiness consumer handles snapshotted only", ev.Kind()))
	}
	log := s.log.With("backup_id", sn.BackupID, "workload", sn.Workload.String())
	defer s.inFlight.add(sn.BackupID)()
	wctx, span := s.metrics.tracer.Start(ctx, "wait for readiness", trace.WithAttributes(attribute.String("freezeframe.backup_id", sn.BackupID)))
	ready, err := s.waitReady(wctx, sn, ev.Time())
	endSpan(span, err)
	if err != nil {
		return s.failReady(ctx, sn, err, log)
	}
	// The backup is complete once its freeze has ended well: wait for the
	// end (the hooker records it right after the resume, or a watchdog's
	// takeover within the freeze cap), so that a backup that ends in
	// failure has its snapshots deleted here, not left behind.
	end, ended := s.endOf(ctx, sn.BackupRef, time.Until(ev.Time().Add(s.cfg.ReadyTimeout)))
	if !ended && ctx.Err() != nil {
		return ctx.Err() // shutting down: redelivered, and waits again
	}
	if ended && !end.Succeeded {
		// Cut inside the freeze, but the backup failed (an unlock came
		// before the resume it asked for): not a backup to keep or count.
		log.WarnContext(ctx, "the backup failed after its cut; its snapshots are deleted", "reason", end.Reason)
		return s.discard(ctx, sn.BackupRef, log)
	}
	pruned, perr := s.prune(ctx, sn, ended, log)
	if perr != nil {
		// The backup itself is good; retention is tried again after the
		// workload's next backup.
		log.WarnContext(ctx, "retention failed", "snapshots_to_keep", sn.SnapshotsToKeep, "err", perr)
	}
	ready.Pruned = pruned
	if _, dup, err := s.pub.Publish(ctx, ready); err != nil {
		return fmt.Errorf("publish snapshot-ready: %w", err)
	} else if !dup {
		s.metrics.recordReady(ctx, ready.Mode, ready.ReadyAfter.Std())
		s.metrics.recordPruned(ctx, len(pruned))
	}
	log.InfoContext(ctx, "snapshots ready", "mode", ready.Mode, "ready_after", ready.ReadyAfter.Std(), "pruned", pruned)
	return nil
}

// waitReady waits until every snapshot of sn is ready to use.
// The timeout counts from snapshotted, when the Snapshotted was published:
// the same instant on every redelivery, and on this service's clock rather
// than the storage's.
func (s *Service) waitReady(ctx context.Context, sn *events.Snapshotted, snapshotted time.Time) (*events.SnapshotReady, error) {
	var lastCut time.Time
	for _, c := range sn.Snapshots {
		if c.CutAt.After(lastCut) {
			lastCut = c.CutAt
		}
	}
	deadline := snapshotted.Add(s.cfg.ReadyTimeout)
	why := fmt.Sprintf("within %s of the cut", s.cfg.ReadyTimeout)
	ns := sn.Workload.Namespace
	out := &events.SnapshotReady{BackupRef: sn.BackupRef, Mode: sn.Mode, Group: sn.Group, SnapshotsToKeep: sn.SnapshotsToKeep}
	var lastReady time.Time

	switch sn.Mode {
	case events.SnapshotModeGroup:
		if s.groupCuts == nil {
			return nil, events.Permanent(fmt.Errorf("backup %s was cut as volumegroupsnapshot %s/%s, but this snapshotter does not follow group snapshots (SNAPSHOTTER_GROUP_SNAPSHOTS=false, or the API is not served)", sn.BackupID, ns, sn.Group))
		}
		wait := s.groupCuts.wait(ns, map[string]string{sn.Group: "group"})
		defer wait.stop()
		got, err := wait.until(ctx, stageReady, deadline, ErrNotReady, why)
		if err != nil {
			return nil, err
		}
		members, err := s.groupMembers(ctx, sn.BackupRef, sn.Group)
		if err != nil {
			return nil, err
		}
		// The group is ready once the driver has its members; each member
		// VolumeSnapshot, which a restore names, follows.
		byName := map[string]string{}
		for _, c := range sn.Snapshots {
			name := members[c.PVC]
			if name == "" {
				return nil, fmt.Errorf("volumegroupsnapshot %s/%s has no member for pvc %s", ns, sn.Group, c.PVC)
			}
			byName[name] = c.PVC
		}
		mwait := s.cuts.wait(ns, byName)
		defer mwait.stop()
		ready, err := mwait.until(ctx, stageReady, deadline, ErrNotReady, why)
		if err != nil {
			return nil, err
		}
		lastReady = got[sn.Group].ReadyAt
		for _, c := range sn.Snapshots {
			m := ready[members[c.PVC]]
			c.Name, c.Class, c.ReadyAt, c.RestoreSize = m.Name, sn.GroupClass, m.ReadyAt, m.RestoreSize
			if m.ReadyAt.After(lastReady) {
				lastReady = m.ReadyAt
			}
			out.Snapshots = append(out.Snapshots, c)
		}
	default:
		names := make(map[string]string, len(sn.Snapshots))
		for _, c := range sn.Snapshots {
			names[c.Name] = c.PVC
		}
		wait := s.cuts.wait(ns, names)
		defer wait.stop()
		got, err := wait.until(ctx, stageReady, deadline, ErrNotReady, why)
		if err != nil {
			return nil, err
		}
		for _, c := range sn.Snapshots {
			r := got[c.Name]
			c.ReadyAt, c.RestoreSize = r.ReadyAt, r.RestoreSize
			if r.ReadyAt.After(lastReady) {
				lastReady = r.ReadyAt
			}
			out.Snapshots = append(out.Snapshots, c)
		}
	}
	if !lastCut.IsZero() && lastReady.After(lastCut) {
		out.ReadyAfter = events.Duration(lastReady.Sub(lastCut))
	}
	return out, nil
}

// failReady settles a readiness that failed: retried while the error may
// pass and deliveries remain, else a BackupFailed (step ready), which ends
// the backup: the application was resumed long ago.
func (s *Service) failReady(ctx context.Context, sn *events.Snapshotted, err error, log *slog.Logger) error {
	d, _ := events.DeliveryOf(ctx)
	if ctx.Err() != nil || (!d.Last() && isTransient(err)) {
		// Shutting down never fails a backup: the wait goes on where the
		// event is redelivered.
		log.WarnContext(ctx, "readiness check interrupted, will retry", "attempt", d.Attempt, "err", err)
		return err
	}
	log.WarnContext(ctx, "snapshots not ready", "attempt", d.Attempt, "err", err)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), failurePublishTimeout)
	defer cancel()
	if _, _, perr := s.pub.Publish(pctx, &events.BackupFailed{BackupRef: sn.BackupRef, Step: events.StepReady, Reason: reason(err)}); perr != nil {
		return fmt.Errorf("publish backup failed after %w: %w", err, perr)
	}
	return nil
}

// discard deletes whatever a failed backup created: its VolumeSnapshots
// and its VolumeGroupSnapshot, as the API server lists them now, not as the
// watches last saw them (a create answered late, after an API server
// restart, may not have reached them yet). An error means something may be
// left: the caller returns it, so that its event is redelivered and the
// discard tried again.
func (s *Service) discard(ctx context.Context, ref events.BackupRef, log *slog.Logger) error {
	kind, err := events.NormalizeKind(ref.Workload.Kind)
	if err != nil {
		return err
	}
	selector := labels.SelectorFromSet(ownLabels(ref, kind)).String()
	b := backup{id: ref.BackupID, namespace: ref.Workload.Namespace}
	vs, err := s.deps.Snapshots.SnapshotV1().VolumeSnapshots(b.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return fmt.Errorf("list the snapshots of failed backup %s: %w", ref.BackupID, err)
	}
	for _, v := range vs.Items {
		if v.Annotations[AnnotationBackupID] == ref.BackupID {
			b.volumes = append(b.volumes, v.Name)
		}
	}
	if s.groupCuts != nil {
		gs, err := s.deps.Snapshots.GroupsnapshotV1().VolumeGroupSnapshots(b.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return fmt.Errorf("list the group snapshots of failed backup %s: %w", ref.BackupID, err)
		}
		for _, g := range gs.Items {
			if g.Annotations[AnnotationBackupID] == ref.BackupID {
				// Its members go with it, and are listed above only to be
				// deleted by it.
				gb := backup{id: ref.BackupID, namespace: b.namespace, group: g.Name}
				if err := s.deleteBackup(ctx, gb); err != nil {
					return fmt.Errorf("delete the snapshots of failed backup %s: %w", ref.BackupID, err)
				}
				log.InfoContext(ctx, "deleted the snapshots of the failed backup", "snapshots", gb.names())
				return nil
			}
		}
	}
	if len(b.volumes) == 0 {
		return nil
	}
	if err := s.deleteBackup(ctx, b); err != nil {
		return fmt.Errorf("delete the snapshots of failed backup %s: %w", ref.BackupID, err)
	}
	log.InfoContext(ctx, "deleted the snapshots of the failed backup", "snapshots", b.names())
	return nil
}

// backup is one backup's snapshots of a workload, as the watches see them.
type backup struct {
	id        string
	namespace string
	volumes   []string // VolumeSnapshots (volume mode)
	group     string   // VolumeGroupSnapshot (group mode)
	cutAt     time.Time
	complete  bool
}

func (b backup) names() []string {
	if b.group != "" {
		return []string{"volumegroupsnapshot/" + b.group}
	}
	out := make([]string, len(b.volumes))
	for i, v := range b.volumes {
		out[i] = "volumesnapshot/" + v
	}
	return out
}

// backupsOf lists the backups of a workload from the watches' caches.
func (s *Service) backupsOf(w events.Workload) []backup {
	kind, err := events.NormalizeKind(w.Kind)
	if err != nil {
		return nil
	}
	byID := map[string]*backup{}
	collect := func(cw *cutWatch, group bool) {
		if cw == nil {
			return
		}
		for _, obj := range cw.informer.GetStore().List() { // the snapshots, not their contents
			m, err := meta.Accessor(obj)
			if err != nil || m.GetNamespace() != w.Namespace || m.GetLabels()[LabelWorkloadKind] != kind || m.GetLabels()[LabelWorkloadName] != LabelValue(w.Name) {
				continue
			}
			id := m.GetAnnotations()[AnnotationBackupID]
			if id == "" {
				continue
			}
			st, _ := cw.current(obj)
			b := byID[id]
			if b == nil {
				b = &backup{id: id, namespace: w.Namespace, complete: true}
				byID[id] = b
			}
			if group {
				b.group = st.name
			} else {
				b.volumes = append(b.volumes, st.name)
			}
			if st.cutAt.After(b.cutAt) {
				b.cutAt = st.cutAt
			}
			b.complete = b.complete && st.ready && st.errMsg == "" && !st.cutAt.IsZero() && m.GetDeletionTimestamp() == nil
		}
	}
	collect(s.cuts, false)
	collect(s.groupCuts, true)
	out := make([]backup, 0, len(byID))
	for _, b := range byID {
		sort.Strings(b.volumes)
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].cutAt.Equal(out[j].cutAt) {
			return out[i].cutAt.After(out[j].cutAt)
		}
		return out[i].id > out[j].id
	})
	return out
}

// endOf waits up to wait for ref's freeze to end; false when it has not
// (or the record cannot be read).
func (s *Service) endOf(ctx context.Context, ref events.BackupRef, wait time.Duration) (events.FreezeEnd, bool) {
	deadline := time.Now().Add(wait)
	pause := 10 * time.Millisecond
	for {
		end, err := s.book.Ended(ctx, ref)
		if err == nil {
			return end, true
		}
		if time.Now().After(deadline) {
			return events.FreezeEnd{}, false
		}
		select {
		case <-ctx.Done():
			return events.FreezeEnd{}, false
		case <-time.After(pause):
		}
		// Usually milliseconds; after a hooker crash, up to the freeze cap.
		pause = min(2*pause, time.Second)
	}
}

// prune applies the retention of sn's workload by events.Retain, the rule
// that `freezeframe backups` shows too: it keeps the newest SnapshotsToKeep
// complete backups and deletes the snapshots of older complete ones.
// Complete means every snapshot ready and the freeze ended with success
// (the freeze record says so): only those are consistent. A
// backup in flight (being cut, not ready, not ended, here or on another
// replica) is never deleted and does not count; a backup whose freeze ended
// in failure never counts, and its leftover snapshots are deleted. This
// backup counts only when it has ended well (thisEnded), so that a backup
// that turns out failed never costs an older good one.
func (s *Service) prune(ctx context.Context, sn *events.Snapshotted, thisEnded bool, log *slog.Logger) ([]string, error) {
	keep := sn.SnapshotsToKeep
	if keep <= 0 {
		return nil, nil
	}
	taken := 0
	if thisEnded {
		taken = 1
	}
	var others []backup
	var judged []events.RetainedBackup
	endReason := map[string]string{}
	for _, b := range s.backupsOf(sn.Workload) {
		// This backup is kept, wherever the caches (which may not have
		// caught up with the readiness the wait just saw) place it.
		if b.id == sn.BackupID {
			continue
		}
		r := events.RetainedBackup{ID: b.id, CutAt: b.cutAt, Complete: b.complete, InFlight: s.inFlight.has(b.id)}
		if r.Complete && !r.InFlight {
			// Not ended, or unknown: never deleted, never counted.
			if end, err := s.book.Ended(ctx, events.BackupRef{BackupID: b.id, Workload: sn.Workload}); err == nil {
				r.Ended, r.Succeeded = true, end.Succeeded
				endReason[b.id] = end.Reason
			}
		}
		others = append(others, b)
		judged = append(judged, r)
	}
	var pruned []string
	var errs []error
	for i, verdict := range events.Retain(keep, taken, judged) {
		b := others[i]
		switch verdict {
		case events.RetentionDiscard:
			if err := s.deleteBackup(ctx, b); err != nil {
				errs = append(errs, err)
				continue
			}
			log.InfoContext(ctx, "deleted the snapshots of a failed backup", "failed_backup", b.id, "snapshots", b.names(), "reason", endReason[b.id])
		case events.RetentionPrune:
			if err := s.deleteBackup(ctx, b); err != nil {
				errs = append(errs, err)
				continue
			}
			log.InfoContext(ctx, "retention deleted an older backup", "pruned_backup", b.id, "snapshots", b.names(), "snapshots_to_keep", keep)
			pruned = append(pruned, b.id)
		}
	}
	return pruned, errors.Join(errs...)
}

func (s *Service) deleteBackup(ctx context.Context, b backup) error {
	var errs []error
	del := func(err error, what string) {
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s/%s: %w", b.namespace, what, err))
		}
	}
	if b.group != "" {
		// The members go with their group (and refuse to go alone).
		del(s.deps.Snapshots.GroupsnapshotV1().VolumeGroupSnapshots(b.namespace).Delete(ctx, b.group, metav1.DeleteOptions{}), "volumegroupsnapshot/"+b.group)
		return errors.Join(errs...)
	}
	for _, v := range b.volumes {
		del(s.deps.Snapshots.SnapshotV1().VolumeSnapshots(b.namespace).Delete(ctx, v, metav1.DeleteOptions{}), "volumesnapshot/"+v)
	}
	return errors.Join(errs...)
}

// inFlight is the set of backups this replica is cutting or following to
// readiness, counted so that duplicates nest.
type inFlight struct {
	mu  sync.Mutex
	ids map[string]int
}

// add marks id in flight until the returned func is called.
func (f *inFlight) add(id string) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ids == nil {
		f.ids = map[string]int{}
	}
	f.ids[id]++
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.ids[id]--; f.ids[id] <= 0 {
			delete(f.ids, id)
		}
	}
}

func (f *inFlight) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ids[id] > 0
}
