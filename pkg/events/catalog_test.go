package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

var (
	shopRedis = events.Workload{Cluster: "dev", Namespace: "shop", Kind: events.KindDeployment, Name: "redis"}
	shopDB    = events.Workload{Cluster: "dev", Namespace: "shop", Kind: events.KindStatefulSet, Name: "db"}
	t0        = time.Date(2026, 10, 1, 2, 0, 0, 0, time.UTC)
)

// history builds the events of backups, each at its own time.
type history struct {
	t   *testing.T
	evs []events.Event
}

func (h *history) add(at time.Time, p events.Payload) {
	h.t.Helper()
	ev, err := eventstest.NewEvent(p, events.WithTime(at))
	if err != nil {
		h.t.Fatal(err)
	}
	h.evs = append(h.evs, ev)
}

// consistent adds a backup of w at hour h that went well: requested,
// quiesced, one snapshot of data cut, resumed, ready (pruning pruned).
func (h *history) consistent(w events.Workload, id string, hour, keep int, pruned ...string) (events.FreezeEnd, events.ClusterSnapshot) {
	h.t.Helper()
	at := t0.Add(time.Duration(hour) * time.Hour)
	ref := events.BackupRef{BackupID: id, Workload: w}
	snap := events.Snapshot{Name: "ff-" + id + "-data", Namespace: w.Namespace, PVC: "data", CutAt: at.Add(time.Second)}
	h.add(at, &events.BackupRequested{BackupRef: ref, RequestedBy: "policy/nightly"})
	h.add(at.Add(500*time.Millisecond), &events.Quiesced{BackupRef: ref, QuiescedAt: at, Blueprint: "bp"})
	h.add(at.Add(time.Second), &events.Snapshotted{BackupRef: ref, Mode: events.SnapshotModeVolume, Snapshots: []events.Snapshot{snap}, SnapshotsToKeep: keep})
	h.add(at.Add(1100*time.Millisecond), &events.Resumed{BackupRef: ref, Reason: events.ResumeAfterSnapshot, Succeeded: true, FrozenFor: events.Duration(600 * time.Millisecond)})
	ready := snap
	ready.ReadyAt = at.Add(3 * time.Second)
	h.add(at.Add(3*time.Second), &events.SnapshotReady{BackupRef: ref, Mode: events.SnapshotModeVolume, Snapshots: []events.Snapshot{ready}, SnapshotsToKeep: keep, Pruned: pruned})
	end := events.FreezeEnd{BackupID: id, Workload: w, Succeeded: true, Resumed: true, Reason: events.ResumeAfterSnapshot, FrozenFor: events.Duration(600 * time.Millisecond), EndedAt: at.Add(1100 * time.Millisecond)}
	cs := events.ClusterSnapshot{Kind: events.SnapshotKindVolume, Namespace: w.Namespace, Name: snap.Name, BackupID: id, WorkloadKind: w.Kind, WorkloadName: w.Name,
		PVC: "data", CutAt: snap.CutAt, ReadyToUse: true, RestoreSize: "1Gi"}
	return end, cs
}

func byID(t *testing.T, cat events.Catalog, w events.Workload) map[string]events.CatalogBackup {
	t.Helper()
	for _, wb := range cat.Workloads {
		if wb.Workload.Key() == w.Key() {
			out := map[string]events.CatalogBackup{}
			for _, b := range wb.Backups {
				out[b.BackupID] = b
			}
			return out
		}
	}
	t.Fatalf("no workload %s in the catalog: %+v", w, cat.Workloads)
	return nil
}

// catalogSources is one history of shop/redis (keep 2) and shop/db (keep
// all): pruned, kept, missing, failed-after-the-cut, unlocked by an
// operator, in flight, and a snapshot whose events aged out.
func catalogSources(t *testing.T) ([]events.Event, []events.FreezeEnd, []events.ClusterSnapshot) {
	h := &history{t: t}
	var ends []events.FreezeEnd
	var snaps []events.ClusterSnapshot
	keep := func(e events.FreezeEnd, cs events.ClusterSnapshot) { ends = append(ends, e); snaps = append(snaps, cs) }
	dropSnapshot := func(e events.FreezeEnd, _ events.ClusterSnapshot) { ends = append(ends, e) }

	dropSnapshot(h.consistent(shopRedis, "bk-1", 1, 2)) // pruned by bk-3
	keep(h.consistent(shopRedis, "bk-2", 2, 2))         // still there, first to go next
	dropSnapshot(h.consistent(shopRedis, "bk-6", 3, 2)) // deleted by hand
	keep(h.consistent(shopRedis, "bk-3", 4, 2, "bk-1")) // the newest good one
	keep(h.consistent(shopDB, "bk-shopDB", 1, 0))       // retention off

	// bk-4: cut while frozen, but the watchdog's unlock won the race with
	// the resume it asked for. Its events even carry a successful Resumed;
	// the end says it failed, and that decides.
	at := t0.Add(5 * time.Hour)
	ref4 := events.BackupRef{BackupID: "bk-4", Workload: shopRedis}
	snap4 := events.Snapshot{Name: "ff-bk-4-data", Namespace: "shop", PVC: "data", CutAt: at.Add(time.Second)}
	h.add(at, &events.BackupRequested{BackupRef: ref4, RequestedBy: "cli"})
	h.add(at.Add(time.Second/2), &events.Quiesced{BackupRef: ref4, QuiescedAt: at})
	h.add(at.Add(time.Second), &events.Snapshotted{BackupRef: ref4, Mode: events.SnapshotModeVolume, Snapshots: []events.Snapshot{snap4}, SnapshotsToKeep: 2})
	h.add(at.Add(time.Second), &events.UnlockRequested{BackupRef: ref4, Reason: "deadline passed", RequestedBy: "watchdog/hooker-1", FreezeRevision: 7})
	h.add(at.Add(time.Second), &events.BackupFailed{BackupRef: ref4, Step: events.StepFreeze, Reason: "unlock requested: deadline passed", ResumePending: true})
	h.add(at.Add(2*time.Second), &events.Resumed{BackupRef: ref4, Reason: events.ResumeAfterSnapshot, Succeeded: true, FrozenFor: events.Duration(5 * time.Second)})
	ends = append(ends, events.FreezeEnd{BackupID: "bk-4", Workload: shopRedis, Reason: events.ResumeStaleLock, Resumed: true, FrozenFor: events.Duration(5 * time.Second), EndedAt: at.Add(2 * time.Second)})
	snaps = append(snaps, events.ClusterSnapshot{Kind: events.SnapshotKindVolume, Namespace: "shop", Name: snap4.Name, BackupID: "bk-4", WorkloadKind: "Deployment", WorkloadName: "redis", PVC: "data", CutAt: snap4.CutAt, ReadyToUse: true})

	// bk-5: an operator forced the resume before anything was cut.
	at = t0.Add(6 * time.Hour)
	ref5 := events.BackupRef{BackupID: "bk-5", Workload: shopRedis}
	h.add(at, &events.BackupRequested{BackupRef: ref5, RequestedBy: "cli"})
	h.add(at.Add(time.Second/2), &events.Quiesced{BackupRef: ref5, QuiescedAt: at})
	h.add(at.Add(12*time.Second), &events.UnlockRequested{BackupRef: ref5, Reason: events.ResumeOperator, RequestedBy: "alice"})
	h.add(at.Add(12*time.Second), &events.BackupFailed{BackupRef: ref5, Step: events.StepFreeze, Reason: "an operator forced the resume (alice)", ResumePending: true})
	h.add(at.Add(12*time.Second), &events.Resumed{BackupRef: ref5, Reason: events.ResumeOperator, FrozenFor: events.Duration(12 * time.Second)})
	ends = append(ends, events.FreezeEnd{BackupID: "bk-5", Workload: shopRedis, Reason: events.ResumeOperator, Resumed: true, FrozenFor: events.Duration(12 * time.Second), EndedAt: at.Add(12 * time.Second)})

	// bk-7: frozen now.
	at = t0.Add(7 * time.Hour)
	ref7 := events.BackupRef{BackupID: "bk-7", Workload: shopRedis}
	h.add(at, &events.BackupRequested{BackupRef: ref7, RequestedBy: "cli"})
	h.add(at.Add(time.Second/2), &events.Quiesced{BackupRef: ref7, QuiescedAt: at})

	// bk-0: a snapshot kept longer than the stream keeps events.
	snaps = append(snaps, events.ClusterSnapshot{Kind: events.SnapshotKindVolume, Namespace: "shop", Name: "ff-bk-0-data", BackupID: "bk-0", WorkloadKind: "Deployment", WorkloadName: "redis", PVC: "data", CutAt: t0, ReadyToUse: true})
	// Another namespace's snapshot: not selected.
	snaps = append(snaps, events.ClusterSnapshot{Kind: events.SnapshotKindVolume, Namespace: "other", Name: "ff-x", BackupID: "bk-x", WorkloadKind: "Deployment", WorkloadName: "redis", ReadyToUse: true})
	return h.evs, ends, snaps
}

func TestCatalogJoinsEventsEndsAndSnapshots(t *testing.T) {
	evs, ends, snaps := catalogSources(t)
	cat := events.NewCatalog(events.BackupsFilter{Cluster: "dev", Namespace: "shop"}, evs, ends, snaps, true)
	if !cat.ClusterChecked || len(cat.Workloads) != 2 || cat.Workloads[0].Workload.Name != "redis" || cat.Workloads[1].Workload.Name != "db" {
		t.Fatalf("workloads %+v", cat.Workloads)
	}
	if wb := cat.Workloads[0]; wb.SnapshotsToKeep != 2 {
		t.Errorf("shopRedis keeps %d, want 2 (its newest cut backup's)", wb.SnapshotsToKeep)
	}
	var order []string
	for _, b := range cat.Workloads[0].Backups {
		order = append(order, b.BackupID)
	}
	if got, want := order, []string{"bk-7", "bk-5", "bk-4", "bk-3", "bk-6", "bk-2", "bk-1", "bk-0"}; !equal(got, want) {
		t.Errorf("backups %v, want newest first %v", got, want)
	}

	b := byID(t, cat, shopRedis)
	type want struct {
		outcome    events.BackupOutcome
		states     []events.SnapshotState
		restorable bool
		retention  events.RetentionPlan
	}
	for id, w := range map[string]want{
		"bk-1": {events.OutcomeConsistent, []events.SnapshotState{events.SnapshotStatePruned}, false, events.PlanPruned},
		"bk-2": {events.OutcomeConsistent, []events.SnapshotState{events.SnapshotStateReady}, true, events.PlanPruneNext},
		"bk-6": {events.OutcomeConsistent, []events.SnapshotState{events.SnapshotStateMissing}, false, events.PlanGone},
		"bk-3": {events.OutcomeConsistent, []events.SnapshotState{events.SnapshotStateReady}, true, events.PlanKeep},
		"bk-4": {events.OutcomeFailed, []events.SnapshotState{events.SnapshotStateReady}, false, events.PlanDiscardNext},
		"bk-5": {events.OutcomeFailed, []events.SnapshotState{}, false, events.PlanGone},
		"bk-7": {events.OutcomeInFlight, []events.SnapshotState{}, false, events.PlanNotCounted},
		"bk-0": {events.OutcomeUnknown, []events.SnapshotState{events.SnapshotStateReady}, false, events.PlanNotCounted},
	} {
		got := b[id]
		var states []events.SnapshotState
		for _, s := range got.Snapshots {
			states = append(states, s.State)
		}
		if got.Outcome != w.outcome || !equal(states, w.states) || got.Restorable != w.restorable || got.Retention != w.retention {
			t.Errorf("%s: outcome %s, snapshots %v, restorable %v, retention %s; want %s, %v, %v, %s",
				id, got.Outcome, states, got.Restorable, got.Retention, w.outcome, w.states, w.restorable, w.retention)
		}
	}

	if bk := b["bk-3"]; bk.RequestedBy != "policy/nightly" || !bk.RequestedAt.Equal(t0.Add(4*time.Hour)) || bk.FrozenFor.Std() != 600*time.Millisecond ||
		bk.Snapshots[0].Name != "ff-bk-3-data" || bk.Snapshots[0].PVC != "data" || bk.Snapshots[0].RestoreSize != "1Gi" || bk.Unlock != nil {
		t.Errorf("bk-3 %+v", bk)
	}
	// Cut, and the events say resumed with success, but the end says the
	// unlock won: failed, and why; never consistent.
	if bk := b["bk-4"]; bk.Step != events.StepFreeze || bk.Reason != "unlock requested: deadline passed" ||
		bk.Unlock == nil || bk.Unlock.By != "watchdog/hooker-1" || bk.Unlock.Reason != "deadline passed" {
		t.Errorf("bk-4 %+v (unlock %+v)", bk, bk.Unlock)
	}
	if bk := b["bk-5"]; bk.Unlock == nil || bk.Unlock.By != "alice" || bk.Unlock.Reason != events.ResumeOperator || bk.FrozenFor.Std() != 12*time.Second ||
		bk.Step != events.StepFreeze || bk.Reason != "an operator forced the resume (alice)" {
		t.Errorf("bk-5 %+v (unlock %+v)", bk, bk.Unlock)
	}
	if bk := b["bk-0"]; bk.Workload != shopRedis {
		t.Errorf("bk-0, known from the cluster alone, names workload %+v", bk.Workload)
	}
	if d := byID(t, cat, shopDB)["bk-shopDB"]; d.Outcome != events.OutcomeConsistent || !d.Restorable || d.Retention != events.PlanKeep || cat.Workloads[1].SnapshotsToKeep != 0 {
		t.Errorf("shopDB with retention off: %+v", d)
	}

	// --workload: only statefulset/db.
	only := events.NewCatalog(events.BackupsFilter{Cluster: "dev", Namespace: "shop", WorkloadKind: "sts", Name: "db"}, evs, ends, snaps, true)
	if len(only.Workloads) != 1 || only.Workloads[0].Workload != shopDB || len(only.Workloads[0].Backups) != 1 {
		t.Errorf("filtered to statefulset/shopDB: %+v", only.Workloads)
	}
}

// Without the cluster, snapshots are as the events say: the one deleted by
// hand cannot be told from a ready one, and the catalog says it did not look.
func TestCatalogWithoutTheCluster(t *testing.T) {
	evs, ends, _ := catalogSources(t)
	cat := events.NewCatalog(events.BackupsFilter{Namespace: "shop"}, evs, ends, nil, false)
	b := byID(t, cat, shopRedis)
	if cat.ClusterChecked || b["bk-6"].Snapshots[0].State != events.SnapshotStateReady || b["bk-1"].Snapshots[0].State != events.SnapshotStatePruned ||
		b["bk-4"].Snapshots[0].State != events.SnapshotStateDeleted || b["bk-4"].Outcome != events.OutcomeFailed {
		t.Errorf("without the cluster: %+v", cat)
	}
	// Retention judged from the events: bk-3 and bk-6 are the newest good
	// ones; bk-2 would go next.
	if b["bk-3"].Retention != events.PlanKeep || b["bk-6"].Retention != events.PlanPruneNext || b["bk-2"].Retention != events.PlanPruneNext {
		t.Errorf("retention without the cluster: bk-3 %s, bk-6 %s, bk-2 %s", b["bk-3"].Retention, b["bk-6"].Retention, b["bk-2"].Retention)
	}
}

type listedSnapshots []events.ClusterSnapshot

func (l listedSnapshots) ListSnapshots(_ context.Context, namespace string) ([]events.ClusterSnapshot, error) {
	var out []events.ClusterSnapshot
	for _, s := range l {
		if namespace == "" || s.Namespace == namespace {
			out = append(out, s)
		}
	}
	return out, nil
}

// Client.Backups reads the stream and the backups bucket for real.
func TestClientBackupsReadsTheStreamAndTheEnds(t *testing.T) {
	srv := eventstest.NewServer(t)
	nc, js := srv.JetStream()
	client, err := events.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	cl := listedSnapshots{}
	if cat, err := client.Backups(t.Context(), events.BackupsFilter{}, cl); err != nil || len(cat.Workloads) != 0 {
		t.Fatalf("empty stream, no bucket: %+v, %v", cat, err)
	}

	evs, ends, snaps := catalogSources(t)
	pub := eventstest.NewPipeline(js)
	for _, ev := range evs {
		if _, _, err := pub.Publish(t.Context(), ev.Payload, events.WithTime(ev.Time())); err != nil {
			t.Fatal(err)
		}
	}
	for _, end := range ends {
		eventstest.RecordEnd(t, js, end)
	}
	cat, err := client.Backups(t.Context(), events.BackupsFilter{Cluster: "dev", Namespace: "shop", WorkloadKind: "deploy", Name: "redis"}, listedSnapshots(snaps))
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.Workloads) != 1 || len(cat.Workloads[0].Backups) != 8 {
		t.Fatalf("catalog of shopRedis: %+v", cat.Workloads)
	}
	b := byID(t, cat, shopRedis)
	if b["bk-4"].Outcome != events.OutcomeFailed || b["bk-6"].Snapshots[0].State != events.SnapshotStateMissing || b["bk-5"].Unlock == nil || b["bk-2"].Retention != events.PlanPruneNext {
		t.Errorf("catalog read back: bk-4 %+v, bk-6 %+v, bk-5 %+v, bk-2 %+v", b["bk-4"], b["bk-6"], b["bk-5"], b["bk-2"])
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A group snapshot: the group and its members, named by SnapshotReady (or,
// before it, by the cluster), each with its state.
func TestCatalogGroupSnapshot(t *testing.T) {
	h := &history{t: t}
	ref := events.BackupRef{BackupID: "bk-g", Workload: shopDB}
	cut := []events.Snapshot{{Namespace: "shop", PVC: "data-0", CutAt: t0}, {Namespace: "shop", PVC: "data-1", CutAt: t0}}
	h.add(t0, &events.BackupRequested{BackupRef: ref})
	h.add(t0, &events.Snapshotted{BackupRef: ref, Mode: events.SnapshotModeGroup, Group: "ffg-bk-g", Snapshots: cut, SnapshotsToKeep: 3})
	h.add(t0, &events.Resumed{BackupRef: ref, Reason: events.ResumeAfterSnapshot, Succeeded: true})
	end := events.FreezeEnd{BackupID: "bk-g", Workload: shopDB, Succeeded: true, Resumed: true, Reason: events.ResumeAfterSnapshot}
	member := func(name, pvc string, ready bool) events.ClusterSnapshot {
		return events.ClusterSnapshot{Kind: events.SnapshotKindVolume, Namespace: "shop", Name: name, BackupID: "bk-g", WorkloadKind: "StatefulSet", WorkloadName: "db",
			PVC: pvc, Group: "ffg-bk-g", CutAt: t0, ReadyToUse: ready}
	}
	group := events.ClusterSnapshot{Kind: events.SnapshotKindGroup, Namespace: "shop", Name: "ffg-bk-g", BackupID: "bk-g", WorkloadKind: "StatefulSet", WorkloadName: "db", CutAt: t0, ReadyToUse: true}
	snaps := []events.ClusterSnapshot{group, member("snapshot-aaa", "data-0", true), member("snapshot-bbb", "data-1", false)}

	// Cut, not ready yet: the members are named by the cluster.
	b := byID(t, events.NewCatalog(events.BackupsFilter{}, h.evs, []events.FreezeEnd{end}, snaps, true), shopDB)["bk-g"]
	var got []string
	for _, s := range b.Snapshots {
		got = append(got, s.Kind+"/"+s.Name+"="+string(s.State))
	}
	want := []string{"VolumeGroupSnapshot/ffg-bk-g=ready", "VolumeSnapshot/snapshot-aaa=ready", "VolumeSnapshot/snapshot-bbb=not-ready"}
	if b.Outcome != events.OutcomeCut || !equal(got, want) || b.Restorable || b.Retention != events.PlanNotCounted {
		t.Errorf("group being made ready: %s %v %v %s; want cut %v", b.Outcome, got, b.Restorable, b.Retention, want)
	}

	// Ready: SnapshotReady names the members.
	ready := []events.Snapshot{{Name: "snapshot-aaa", Namespace: "shop", PVC: "data-0", CutAt: t0, ReadyAt: t0}, {Name: "snapshot-bbb", Namespace: "shop", PVC: "data-1", CutAt: t0, ReadyAt: t0}}
	h.add(t0.Add(time.Second), &events.SnapshotReady{BackupRef: ref, Mode: events.SnapshotModeGroup, Group: "ffg-bk-g", Snapshots: ready})
	snaps[2].ReadyToUse = true
	b = byID(t, events.NewCatalog(events.BackupsFilter{}, h.evs, []events.FreezeEnd{end}, snaps, true), shopDB)["bk-g"]
	if b.Outcome != events.OutcomeConsistent || len(b.Snapshots) != 3 || !b.Restorable || b.Retention != events.PlanKeep || b.Mode != events.SnapshotModeGroup {
		t.Errorf("group ready: %+v", b)
	}
}
