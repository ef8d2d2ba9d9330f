package events

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The catalog: every backup of the selected workloads, how it ended, its
// snapshots and what retention will do with it. It joins three sources
// and lets none of them speak for another:
//
//   - the events on the stream (what was asked, cut, resumed, made ready,
//     failed, unlocked);
//   - the freeze ends in BackupsBucket, which decide whether a backup
//     succeeded: a backup whose end says not succeeded is never consistent,
//     whatever its events say;
//   - the snapshots in the cluster, which decide whether the snapshots
//     still exist and are ready: one the events name and the cluster lacks
//     is missing, unless retention pruned it or the backup failed (then it
//     was deleted on purpose).

// BackupsFilter selects the workloads of a catalog; an empty field matches
// anything.
type BackupsFilter struct {
	Cluster   string
	Namespace string
	// WorkloadKind is Deployment or StatefulSet (any case or short form).
	WorkloadKind string
	Name         string
}

// matches reports whether w is selected; kinds compare normalised.
func (f BackupsFilter) matches(w Workload) bool {
	if f.WorkloadKind != "" {
		fk, err1 := NormalizeKind(f.WorkloadKind)
		wk, err2 := NormalizeKind(w.Kind)
		if err1 != nil || err2 != nil || fk != wk {
			return false
		}
	}
	return (f.Cluster == "" || f.Cluster == w.Cluster) && (f.Namespace == "" || f.Namespace == w.Namespace) && (f.Name == "" || f.Name == w.Name)
}

// Kinds of the snapshots in a catalog.
const (
	SnapshotKindVolume = "VolumeSnapshot"
	SnapshotKindGroup  = "VolumeGroupSnapshot"
)

// SnapshotLister is the cluster's side of the catalog: the VolumeSnapshots
// and VolumeGroupSnapshots that freezeframe made (labelled
// freezeframe.io/backup-id), as they are now. The freezeframe CLI passes one
// over the external-snapshotter clientset.
type SnapshotLister interface {
	// ListSnapshots lists them in namespace, or in every namespace when it
	// is empty.
	ListSnapshots(ctx context.Context, namespace string) ([]ClusterSnapshot, error)
}

// ClusterSnapshot is one VolumeSnapshot or VolumeGroupSnapshot of a backup,
// read from the cluster.
type ClusterSnapshot struct {
	// Kind is SnapshotKindVolume or SnapshotKindGroup.
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// BackupID is the whole backup id (annotation freezeframe.io/backup-id).
	BackupID string `json:"backupId"`
	// WorkloadKind and WorkloadName are the labels freezeframe.io/workload-kind
	// and freezeframe.io/workload-name (a name longer than 63 characters is
	// cut and suffixed with a hash there).
	WorkloadKind string `json:"workloadKind"`
	WorkloadName string `json:"workloadName"`
	// PVC is the claim a VolumeSnapshot was cut from; Group the
	// VolumeGroupSnapshot it is a member of.
	PVC   string `json:"pvc,omitempty"`
	Group string `json:"group,omitempty"`
	// CutAt is the cut (status.creationTime); zero until cut.
	CutAt       time.Time `json:"cutAt,omitzero"`
	ReadyToUse  bool      `json:"readyToUse"`
	RestoreSize string    `json:"restoreSize,omitempty"`
	// Error is the status error, if any.
	Error string `json:"error,omitempty"`
	// Deleting: a deletion timestamp is set.
	Deleting bool `json:"deleting,omitempty"`
}

// usable is what retention calls complete, for one snapshot.
func (s ClusterSnapshot) usable() bool {
	return s.ReadyToUse && s.Error == "" && !s.CutAt.IsZero() && !s.Deleting
}

// Catalog is the backups of the selected workloads.
type Catalog struct {
	// ClusterChecked: the snapshots were checked against the cluster.
	// Without it their states are what the events say.
	ClusterChecked bool              `json:"clusterChecked"`
	Workloads      []WorkloadBackups `json:"workloads"`
}

// WorkloadBackups is one workload's backups, newest first.
type WorkloadBackups struct {
	Workload Workload `json:"workload"`
	// SnapshotsToKeep is the retention of the workload's newest cut backup
	// (0: keep all). Each backup's Retention is what retention does with
	// it once the next backup, asking the same, is ready.
	SnapshotsToKeep int             `json:"snapshotsToKeep"`
	Backups         []CatalogBackup `json:"backups"`
}

// BackupOutcome is how a backup ended.
type BackupOutcome string

// Backup outcomes.
const (
	// OutcomeConsistent: cut while frozen, its freeze ended with success,
	// its snapshots made ready.
	OutcomeConsistent BackupOutcome = "consistent"
	// OutcomeCut: cut while frozen and resumed with success; the snapshots
	// are not ready yet.
	OutcomeCut BackupOutcome = "cut"
	// OutcomeFailed: see Step and Reason. Never consistent, whatever was cut.
	OutcomeFailed BackupOutcome = "failed"
	// OutcomeInFlight: its freeze has not ended.
	OutcomeInFlight BackupOutcome = "in-flight"
	// OutcomeUnknown: only its snapshots are left; its events and its end
	// have aged out.
	OutcomeUnknown BackupOutcome = "unknown"
)

// SnapshotState is where one snapshot of a backup is.
type SnapshotState string

// Snapshot states.
const (
	SnapshotStateReady    SnapshotState = "ready"
	SnapshotStateNotReady SnapshotState = "not-ready"
	SnapshotStateError    SnapshotState = "error"
	SnapshotStateDeleting SnapshotState = "deleting"
	// SnapshotStateMissing: the events name it, the cluster does not have
	// it, and nothing of freezeframe deleted it (deleted by hand).
	SnapshotStateMissing SnapshotState = "missing"
	// SnapshotStatePruned: deleted by retention.
	SnapshotStatePruned SnapshotState = "pruned"
	// SnapshotStateDeleted: deleted because its backup failed.
	SnapshotStateDeleted SnapshotState = "deleted"
)

// RetentionPlan is what retention does with a backup once the workload's
// next backup is ready (assuming it succeeds).
type RetentionPlan string

// Retention plans.
const (
	PlanKeep RetentionPlan = "keep"
	// PlanPruneNext: its snapshots are deleted when the next backup is
	// ready.
	PlanPruneNext RetentionPlan = "prune-next"
	// PlanDiscardNext: a failed backup's leftover snapshots, deleted when
	// the next backup is ready.
	PlanDiscardNext RetentionPlan = "discard-next"
	// PlanNotCounted: in flight, not complete, or with no recorded end:
	// neither deleted nor counted.
	PlanNotCounted RetentionPlan = "not-counted"
	// PlanPruned: retention deleted it already.
	PlanPruned RetentionPlan = "pruned"
	// PlanGone: nothing of it is left to keep.
	PlanGone RetentionPlan = "gone"
)

// CatalogBackup is one backup in a catalog.
type CatalogBackup struct {
	BackupID string   `json:"backupId"`
	Workload Workload `json:"workload"`
	// RequestedAt is when it was requested (or first heard of, when its
	// request has aged out of the stream).
	RequestedAt time.Time `json:"requestedAt,omitzero"`
	RequestedBy string    `json:"requestedBy,omitempty"`
	// EndedAt is when its freeze ended.
	EndedAt time.Time     `json:"endedAt,omitzero"`
	Outcome BackupOutcome `json:"outcome"`
	// Step and Reason say why a failed backup failed.
	Step   string `json:"step,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Unlock is set when an unlock (the watchdog's, an operator's, or the
	// holder's own at the cap) ended the freeze.
	Unlock *ForcedUnlock `json:"unlock,omitempty"`
	// FrozenFor is from the end of the pre-hook to the start of the
	// post-hook.
	FrozenFor Duration `json:"frozenFor,omitempty"`
	// Mode is SnapshotModeVolume or SnapshotModeGroup, once cut.
	Mode            string            `json:"mode,omitempty"`
	SnapshotsToKeep int               `json:"snapshotsToKeep,omitempty"`
	Snapshots       []CatalogSnapshot `json:"snapshots"`
	// Restorable: consistent, and every snapshot ready.
	Restorable bool          `json:"restorable"`
	Retention  RetentionPlan `json:"retention"`
}

// ForcedUnlock says who ended a freeze before its post-hook was due.
type ForcedUnlock struct {
	// By is who asked: "watchdog/<replica>" or the operator; empty when the
	// holder resumed by itself at the cap.
	By     string `json:"by,omitempty"`
	Reason string `json:"reason"`
}

// CatalogSnapshot is one snapshot of a backup: what the events say of it,
// and where the cluster has it.
type CatalogSnapshot struct {
	Kind        string        `json:"kind"`
	Namespace   string        `json:"namespace"`
	Name        string        `json:"name,omitempty"`
	PVC         string        `json:"pvc,omitempty"`
	CutAt       time.Time     `json:"cutAt,omitzero"`
	ReadyAt     time.Time     `json:"readyAt,omitzero"`
	RestoreSize string        `json:"restoreSize,omitempty"`
	State       SnapshotState `json:"state"`
	Error       string        `json:"error,omitempty"`
}

// Backups returns the catalog of the workloads f selects: every backup the
// stream, the freeze ends and the cluster know of. cluster may be nil:
// snapshots are then as the events say, and Catalog.ClusterChecked is
// false.
func (c *Client) Backups(ctx context.Context, f BackupsFilter, cluster SnapshotLister) (Catalog, error) {
	evs, err := c.List(ctx, Filter{Cluster: f.Cluster, Namespace: f.Namespace, WorkloadKind: f.WorkloadKind, Name: f.Name}, SubscribeOptions{FromStart: true})
	if err != nil {
		return Catalog{}, fmt.Errorf("backups: %w", err)
	}
	var ends []FreezeEnd
	kv, err := c.js.KeyValue(ctx, BackupsBucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		// No hooker ever ran: no freeze ever ended.
	case err != nil:
		return Catalog{}, fmt.Errorf("backups: bucket %s: %w", BackupsBucket, err)
	default:
		if ends, err = ListFreezeEnds(ctx, kv, f); err != nil {
			return Catalog{}, fmt.Errorf("backups: %w", err)
		}
	}
	var snaps []ClusterSnapshot
	if cluster != nil {
		if snaps, err = cluster.ListSnapshots(ctx, f.Namespace); err != nil {
			return Catalog{}, fmt.Errorf("backups: list snapshots: %w", err)
		}
	}
	return NewCatalog(f, evs, ends, snaps, cluster != nil), nil
}

// ListFreezeEnds reads every FreezeEnd in the backups bucket kv whose
// workload f selects.
func ListFreezeEnds(ctx context.Context, kv jetstream.KeyValue, f BackupsFilter) ([]FreezeEnd, error) {
	tok := func(s string) string {
		if s == "" {
			return "*"
		}
		return subjectToken(s)
	}
	kind := "*"
	if f.WorkloadKind != "" {
		k, err := NormalizeKind(f.WorkloadKind)
		if err != nil {
			return nil, err
		}
		kind = strings.ToLower(k)
	}
	// The key is the workload's freeze key, then the backup id.
	pattern := strings.Join([]string{tok(f.Cluster), tok(f.Namespace), kind, tok(f.Name), "*"}, ".")
	w, err := kv.Watch(ctx, pattern, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read freeze ends: %w", err)
	}
	defer func() { _ = w.Stop() }()
	var out []FreezeEnd
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("read freeze ends: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("read freeze ends: watch closed")
			}
			if e == nil {
				return out, nil // every stored end has been delivered
			}
			var end FreezeEnd
			if json.Unmarshal(e.Value(), &end) != nil || end.BackupID == "" || !f.matches(end.Workload) {
				continue
			}
			out = append(out, end)
		}
	}
}

// catalogEntry gathers what the three sources say of one backup.
type catalogEntry struct {
	ref         BackupRef
	first       time.Time
	requested   *BackupRequested
	requestedAt time.Time
	snapshotted *Snapshotted
	ready       *SnapshotReady
	resumed     *Resumed
	resumedAt   time.Time
	failures    []*BackupFailed
	failedAt    time.Time // of the terminal failure
	unlock      *UnlockRequested
	end         *FreezeEnd
	cluster     []ClusterSnapshot
}

// NewCatalog joins a workload's events (in stream order), the freeze ends
// and the cluster's snapshots into a catalog; clusterChecked says snaps is
// what the cluster has (nil: the cluster was not asked). Client.Backups
// reads the three and calls it.
func NewCatalog(f BackupsFilter, evs []Event, ends []FreezeEnd, snaps []ClusterSnapshot, clusterChecked bool) Catalog {
	entries := map[string]*catalogEntry{}
	byID := map[string][]*catalogEntry{}
	pruned := map[string]map[string]bool{} // workload key → pruned backup ids
	entry := func(ref BackupRef) *catalogEntry {
		if k, err := NormalizeKind(ref.Workload.Kind); err == nil {
			ref.Workload.Kind = k
		}
		key := ref.Workload.Key() + "." + ref.BackupID
		e := entries[key]
		if e == nil {
			e = &catalogEntry{ref: ref}
			entries[key] = e
			byID[ref.BackupID] = append(byID[ref.BackupID], e)
		}
		return e
	}
	for _, ev := range evs {
		if ev.Payload == nil || !f.matches(ev.Workload()) {
			continue
		}
		e := entry(ev.Payload.Ref())
		if e.first.IsZero() {
			e.first = ev.Time()
		}
		switch p := ev.Payload.(type) {
		case *BackupRequested:
			e.requested, e.requestedAt = p, ev.Time()
		case *Snapshotted:
			e.snapshotted = p
		case *SnapshotReady:
			e.ready = p
			for _, id := range p.Pruned {
				wk := e.ref.Workload.Key()
				if pruned[wk] == nil {
					pruned[wk] = map[string]bool{}
				}
				pruned[wk][id] = true
			}
		case *Resumed:
			e.resumed, e.resumedAt = p, ev.Time()
		case *BackupFailed:
			e.failures = append(e.failures, p)
			if !p.ResumePending && e.failedAt.IsZero() {
				e.failedAt = ev.Time()
			}
		case *UnlockRequested:
			e.unlock = p
		}
	}
	for i := range ends {
		if f.matches(ends[i].Workload) {
			entry(BackupRef{BackupID: ends[i].BackupID, Workload: ends[i].Workload}).end = &ends[i]
		}
	}
	for _, s := range snaps {
		kind, err := NormalizeKind(s.WorkloadKind)
		if err != nil || s.BackupID == "" {
			continue
		}
		var owner *catalogEntry
		for _, e := range byID[s.BackupID] {
			w := e.ref.Workload
			// A name too long for a label value is cut and hashed there;
			// the whole backup id and the namespace then tell.
			if w.Namespace == s.Namespace && w.Kind == kind && (w.Name == s.WorkloadName || len(w.Name) > 63) {
				owner = e
				break
			}
		}
		if owner == nil {
			w := Workload{Cluster: f.Cluster, Namespace: s.Namespace, Kind: kind, Name: s.WorkloadName}
			if !f.matches(w) {
				continue
			}
			owner = entry(BackupRef{BackupID: s.BackupID, Workload: w})
		}
		owner.cluster = append(owner.cluster, s)
	}

	byWorkload := map[string]*WorkloadBackups{}
	var judged = map[string][]*catalogEntry{}
	for _, e := range entries {
		wk := e.ref.Workload.Key()
		wb := byWorkload[wk]
		if wb == nil {
			wb = &WorkloadBackups{Workload: e.ref.Workload, Backups: []CatalogBackup{}}
			byWorkload[wk] = wb
		}
		wb.Backups = append(wb.Backups, e.backup(pruned[wk][e.ref.BackupID], clusterChecked))
		judged[wk] = append(judged[wk], e)
	}
	cat := Catalog{ClusterChecked: clusterChecked, Workloads: []WorkloadBackups{}}
	for wk, wb := range byWorkload {
		slices.SortFunc(wb.Backups, func(a, b CatalogBackup) int {
			if c := b.when().Compare(a.when()); c != 0 {
				return c
			}
			return cmp.Compare(b.BackupID, a.BackupID)
		})
		for _, b := range wb.Backups {
			if b.Mode != "" {
				wb.SnapshotsToKeep = b.SnapshotsToKeep // the newest cut backup's
				break
			}
		}
		planRetention(wb, judged[wk], clusterChecked)
		cat.Workloads = append(cat.Workloads, *wb)
	}
	slices.SortFunc(cat.Workloads, func(a, b WorkloadBackups) int {
		return cmp.Or(cmp.Compare(a.Workload.Namespace, b.Workload.Namespace), cmp.Compare(a.Workload.Kind, b.Workload.Kind),
			cmp.Compare(a.Workload.Name, b.Workload.Name), cmp.Compare(a.Workload.Cluster, b.Workload.Cluster))
	})
	return cat
}

// when orders backups: requested, else first heard of.
func (b CatalogBackup) when() time.Time {
	if !b.RequestedAt.IsZero() {
		return b.RequestedAt
	}
	if !b.EndedAt.IsZero() {
		return b.EndedAt
	}
	var t time.Time
	for _, s := range b.Snapshots {
		if s.CutAt.After(t) {
			t = s.CutAt
		}
	}
	return t
}

// backup renders an entry; pruned says a later SnapshotReady names it.
func (e *catalogEntry) backup(pruned, clusterChecked bool) CatalogBackup {
	b := CatalogBackup{BackupID: e.ref.BackupID, Workload: e.ref.Workload, RequestedAt: e.requestedAt}
	if e.requested != nil {
		b.RequestedBy = e.requested.RequestedBy
	}
	if b.RequestedAt.IsZero() {
		b.RequestedAt = e.first
	}
	b.Outcome, b.Step, b.Reason = e.outcome()
	switch {
	case e.end != nil:
		b.EndedAt = e.end.EndedAt
	case e.resumed != nil:
		b.EndedAt = e.resumedAt
	default:
		b.EndedAt = e.failedAt
	}
	if e.end != nil && e.end.Resumed {
		b.FrozenFor = e.end.FrozenFor
	} else if e.resumed != nil {
		b.FrozenFor = e.resumed.FrozenFor
	}
	b.Unlock = e.forcedUnlock()
	if e.snapshotted != nil {
		b.Mode, b.SnapshotsToKeep = e.snapshotted.Mode, e.snapshotted.SnapshotsToKeep
	} else if e.ready != nil {
		b.Mode, b.SnapshotsToKeep = e.ready.Mode, e.ready.SnapshotsToKeep
	}
	// A backup whose freeze failed has its snapshots deleted; one that
	// failed only to become ready keeps them for retention to judge.
	b.Snapshots = e.snapshots(b.Outcome == OutcomeFailed && b.Step != StepReady, pruned, clusterChecked)
	b.Restorable = b.Outcome == OutcomeConsistent && len(b.Snapshots) > 0
	for _, s := range b.Snapshots {
		b.Restorable = b.Restorable && s.State == SnapshotStateReady
	}
	return b
}

// outcome decides how the backup ended. The recorded end, when there is
// one, says whether the freeze ended well; the events say the rest.
func (e *catalogEntry) outcome() (BackupOutcome, string, string) {
	var readyFailure, firstFailure *BackupFailed
	for _, f := range e.failures {
		if f.Step == StepReady {
			readyFailure = cmp.Or(readyFailure, f)
		} else {
			firstFailure = cmp.Or(firstFailure, f)
		}
	}
	failed := func(step, reason string) (BackupOutcome, string, string) {
		if f := cmp.Or(firstFailure, readyFailure); f != nil {
			return OutcomeFailed, f.Step, f.Reason
		}
		return OutcomeFailed, step, reason
	}
	var endedWell bool
	switch {
	case e.end != nil && !e.end.Succeeded:
		return failed(e.end.Step, e.end.Reason)
	case e.end != nil:
		endedWell = true
	case e.resumed != nil && !e.resumed.Succeeded:
		return failed("", "resumed: "+e.resumed.Reason)
	case e.resumed != nil:
		endedWell = true
	case !e.failedAt.IsZero():
		return failed("", "")
	}
	switch {
	case !endedWell && e.requested == nil && e.first.IsZero():
		return OutcomeUnknown, "", ""
	case !endedWell:
		return OutcomeInFlight, "", ""
	case readyFailure != nil:
		return OutcomeFailed, readyFailure.Step, readyFailure.Reason
	case e.ready != nil:
		return OutcomeConsistent, "", ""
	}
	return OutcomeCut, "", ""
}

// forcedUnlock says who ended the freeze early, when an unlock did.
func (e *catalogEntry) forcedUnlock() *ForcedUnlock {
	reason := ""
	switch {
	case e.end != nil && e.end.Resumed:
		reason = e.end.Reason
	case e.resumed != nil:
		reason = e.resumed.Reason
	}
	if reason != ResumeStaleLock && reason != ResumeOperator {
		return nil // an unlock that came after the resume forced nothing
	}
	if e.unlock != nil {
		return &ForcedUnlock{By: e.unlock.RequestedBy, Reason: e.unlock.Reason}
	}
	return &ForcedUnlock{Reason: reason}
}

// snapshots lists what the events say was cut, each with its state in the
// cluster, then whatever else the cluster holds of the backup.
func (e *catalogEntry) snapshots(discarded, pruned, clusterChecked bool) []CatalogSnapshot {
	out := []CatalogSnapshot{}
	inCluster := map[string]ClusterSnapshot{}
	for _, s := range e.cluster {
		inCluster[s.Kind+"/"+s.Name] = s
	}
	seen := map[string]bool{}
	gone := SnapshotStateMissing
	switch {
	case pruned:
		gone = SnapshotStatePruned
	case discarded:
		gone = SnapshotStateDeleted
	}
	withState := func(cs CatalogSnapshot, readyByEvents bool) CatalogSnapshot {
		if s, ok := inCluster[cs.Kind+"/"+cs.Name]; ok && cs.Name != "" {
			seen[cs.Kind+"/"+cs.Name] = true
			cs.State, cs.Error = clusterState(s)
			cs.CutAt = cmp.Or(cs.CutAt, s.CutAt)
			cs.RestoreSize = cmp.Or(cs.RestoreSize, s.RestoreSize)
			return cs
		}
		switch {
		case clusterChecked || gone != SnapshotStateMissing:
			cs.State = gone
		case readyByEvents:
			cs.State = SnapshotStateReady
		default:
			cs.State = SnapshotStateNotReady
		}
		return cs
	}
	ns := e.ref.Workload.Namespace
	mode, group, cut := "", "", []Snapshot(nil)
	if e.snapshotted != nil {
		mode, group, cut = e.snapshotted.Mode, e.snapshotted.Group, e.snapshotted.Snapshots
	}
	var readyAt = map[string]Snapshot{}
	if e.ready != nil {
		mode, group = cmp.Or(mode, e.ready.Mode), cmp.Or(group, e.ready.Group)
		for _, s := range e.ready.Snapshots {
			readyAt[s.PVC] = s
		}
		if cut == nil {
			cut = e.ready.Snapshots
		}
	}
	if mode == SnapshotModeGroup && group != "" {
		out = append(out, withState(CatalogSnapshot{Kind: SnapshotKindGroup, Namespace: ns, Name: group}, e.ready != nil))
	}
	for _, s := range cut {
		cs := CatalogSnapshot{Kind: SnapshotKindVolume, Namespace: cmp.Or(s.Namespace, ns), Name: s.Name, PVC: s.PVC, CutAt: s.CutAt}
		if r, ok := readyAt[s.PVC]; ok {
			cs.Name, cs.ReadyAt, cs.RestoreSize = cmp.Or(r.Name, cs.Name), r.ReadyAt, r.RestoreSize
		}
		if cs.Name == "" {
			// A group's member before the group was ready: named by the
			// cluster, if it has it by now.
			for _, c := range e.cluster {
				if c.Kind == SnapshotKindVolume && c.Group == group && c.PVC == s.PVC {
					cs.Name = c.Name
				}
			}
		}
		out = append(out, withState(cs, e.ready != nil))
	}
	for _, s := range e.cluster {
		if seen[s.Kind+"/"+s.Name] {
			continue
		}
		cs := CatalogSnapshot{Kind: s.Kind, Namespace: s.Namespace, Name: s.Name, PVC: s.PVC, CutAt: s.CutAt, RestoreSize: s.RestoreSize}
		cs.State, cs.Error = clusterState(s)
		out = append(out, cs)
	}
	return out
}

func clusterState(s ClusterSnapshot) (SnapshotState, string) {
	switch {
	case s.Deleting:
		return SnapshotStateDeleting, s.Error
	case s.Error != "":
		return SnapshotStateError, s.Error
	case s.ReadyToUse:
		return SnapshotStateReady, ""
	}
	return SnapshotStateNotReady, ""
}

// planRetention fills in each backup's Retention: what Retain decides when
// the workload's next backup is ready and ends well, judging the backups
// as the snapshotter does, from the snapshots the cluster has (or, without
// the cluster, those the events say are there) and from the recorded ends.
func planRetention(wb *WorkloadBackups, entries []*catalogEntry, clusterChecked bool) {
	byID := map[string]*catalogEntry{}
	for _, e := range entries {
		byID[e.ref.BackupID] = e
	}
	var judged []RetainedBackup
	var at []int
	for i := range wb.Backups {
		b := &wb.Backups[i]
		e := byID[b.BackupID]
		r := RetainedBackup{ID: b.BackupID, Complete: true}
		present := 0
		if clusterChecked {
			for _, s := range e.cluster {
				present++
				r.Complete = r.Complete && s.usable()
				if s.CutAt.After(r.CutAt) {
					r.CutAt = s.CutAt
				}
			}
		} else {
			for _, s := range b.Snapshots {
				if s.State != SnapshotStateReady && s.State != SnapshotStateNotReady {
					continue
				}
				present++
				r.Complete = r.Complete && s.State == SnapshotStateReady
				if s.CutAt.After(r.CutAt) {
					r.CutAt = s.CutAt
				}
			}
		}
		// The snapshotter follows a backup until it is ready or failed.
		r.InFlight = b.Outcome == OutcomeInFlight || b.Outcome == OutcomeCut
		if present == 0 {
			b.Retention = PlanGone
			for _, s := range b.Snapshots {
				if s.State == SnapshotStatePruned {
					b.Retention = PlanPruned
				}
			}
			if r.InFlight {
				b.Retention = PlanNotCounted // nothing cut yet
			}
			continue
		}
		if e.end != nil {
			r.Ended, r.Succeeded = true, e.end.Succeeded
		}
		judged = append(judged, r)
		at = append(at, i)
	}
	plan := map[RetentionVerdict]RetentionPlan{RetentionKeep: PlanKeep, RetentionPrune: PlanPruneNext, RetentionDiscard: PlanDiscardNext, RetentionSkip: PlanNotCounted}
	for j, v := range Retain(wb.SnapshotsToKeep, 1, judged) {
		wb.Backups[at[j]].Retention = plan[v]
	}
}
