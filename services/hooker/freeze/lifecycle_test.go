package freeze

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

// snapshotted publishes the Snapshotted a snapshotter would.
func (f *fixture) snapshotted(t *testing.T, ref events.BackupRef) {
	t.Helper()
	if _, _, err := events.NewPublisher(f.js, events.RoleSnapshotter.Source()).Publish(t.Context(), &events.Snapshotted{BackupRef: ref, Mode: events.SnapshotModeVolume,
		Snapshots: []events.Snapshot{{Name: "s-" + ref.BackupID, Namespace: ref.Workload.Namespace, PVC: "data", CutAt: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
}

func countContaining(cmds []string, s string) int {
	n := 0
	for _, c := range cmds {
		if strings.Contains(c, s) {
			n++
		}
	}
	return n
}

// A request delivered again after its backup resumed (a lost ack, a
// takeover, a replay after the stream's duplicate window) must not freeze
// the application a second time: nothing would ever resume it.
func TestRequestAgainAfterResumeFreezesNothing(t *testing.T) {
	f := newFixture(t, Config{}, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	_, col := f.request(t)
	req := col.Next(5 * time.Second)
	q := col.Next(5 * time.Second)
	if q.Kind() != events.KindQuiesced {
		t.Fatalf("want Quiesced, got %s", q.Kind())
	}
	f.snapshotted(t, q.Payload.Ref())
	evs := col.Until(10*time.Second, events.IsTerminal)
	if r, ok := evs[len(evs)-1].Payload.(*events.Resumed); !ok || !r.Succeeded {
		t.Fatalf("first backup: %v", kinds(evs))
	}
	waitReleased(t, f.svc.leases)

	// Redelivered to the hooker, as after a lost ack.
	err := f.svc.Handle(t.Context(), req)
	if !events.IsPermanent(err) || !errors.Is(err, lease.ErrEnded) {
		t.Fatalf("Handle(request again) = %v, want a permanent ErrEnded", err)
	}
	// Replayed onto the stream under a new message id, as after the
	// duplicate window: the consumer hands it over, the hooker refuses it.
	msg, err := events.Encode(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	col.Next(5 * time.Second) // the replayed request
	if ev, quiet := col.Quiet(time.Second); !quiet {
		t.Fatalf("the replayed request produced %s %+v", ev.Kind(), ev.Payload)
	}
	if n := countContaining(f.exec.Commands(), "CLIENT PAUSE"); n != 1 {
		t.Fatalf("pre-hook ran %d times, want 1: %q", n, f.exec.Commands())
	}
	if _, _, err := f.svc.leases.Get(t.Context(), redisWorkload); !errors.Is(err, lease.ErrNotHeld) {
		t.Fatalf("the workload is held after the replay: %v", err)
	}
	end, err := f.svc.leases.Ended(t.Context(), q.Payload.Ref())
	if err != nil || !end.Succeeded || !end.Resumed || end.Reason != events.ResumeAfterSnapshot {
		t.Fatalf("recorded end %+v, %v", end, err)
	}
}

// A post-hook that failed its last attempt leaves the freeze on: the
// watchdog asks again, and its new request is not dropped as a duplicate
// of the first.
func TestWatchdogAsksAgainAfterAFailedPostHook(t *testing.T) {
	f := newFixture(t, Config{MaxFreeze: 300 * time.Millisecond, MaxDeliver: 2, RetryMaxDelay: 50 * time.Millisecond}, redisBlueprint("KubeExec"),
		map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	// Every delivery of the first unlock and of the failure it announces,
	// and the holder's own try just past the cap: only a new request
	// from the watchdog can resume it then.
	f.exec.Fail("CLIENT UNPAUSE", 5)
	_, col := f.request(t) // nobody snapshots: the deadline passes
	evs := col.Until(30*time.Second, func(e events.Event) bool { return e.Kind() == events.KindResumed })
	var unlocks []string
	var resumeFailed bool
	for _, e := range evs {
		switch p := e.Payload.(type) {
		case *events.UnlockRequested:
			unlocks = append(unlocks, e.CloudEvent.ID())
		case *events.BackupFailed:
			resumeFailed = resumeFailed || p.Step == events.StepResume
		}
	}
	if !resumeFailed || len(unlocks) < 2 {
		t.Fatalf("events %v: want a failed resume, then a second unlock (ids %q)", kinds(evs), unlocks)
	}
	if unlocks[0] == unlocks[1] {
		t.Fatalf("the second unlock reuses the first one's id %q", unlocks[0])
	}
	if r := evs[len(evs)-1].Payload.(*events.Resumed); r.Succeeded || r.Reason != events.ResumeStaleLock {
		t.Fatalf("resumed %+v", r)
	}
	if n := countContaining(f.exec.Commands(), "CLIENT UNPAUSE"); n != 6 {
		t.Fatalf("post-hook ran %d times, want 6 (five failures, then the second unlock): %q", n, f.exec.Commands())
	}
	waitReleased(t, f.svc.leases)
}

// A replica whose lease was taken over (it was thought dead) must not run
// the post-hook of its old freeze: by then the workload may be frozen by a
// later backup, mid-snapshot.
func TestReplicaThatLostItsLeaseDoesNotResume(t *testing.T) {
	f := newFixture(t, Config{}, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	_, col := f.request(t)
	col.Next(5 * time.Second)
	q := col.Next(5 * time.Second)
	if q.Kind() != events.KindQuiesced {
		t.Fatalf("want Quiesced, got %s", q.Kind())
	}
	ref := q.Payload.Ref()
	ctx := t.Context()
	// Another replica takes the freeze over, resumes it and ends it; then a
	// later backup freezes the workload.
	other, err := f.svc.leases.TakeOver(ctx, ref.Workload, ref.BackupID, "hooker-b")
	if err != nil {
		t.Fatal(err)
	}
	if err := other.End(ctx, events.FreezeEnd{Reason: events.ResumeStaleLock, Resumed: true}); err != nil {
		t.Fatal(err)
	}
	later, err := f.svc.leases.Acquire(ctx, lease.Lease{BackupID: "later", Workload: redisWorkload, Holder: "hooker-b", Deadline: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if err := later.SetState(ctx, lease.StateFrozen); err != nil {
		t.Fatal(err)
	}
	// The old freeze's Snapshotted reaches the replica that lost it.
	f.snapshotted(t, ref)
	col.Next(5 * time.Second) // snapshotted
	if ev, quiet := col.Quiet(time.Second); !quiet {
		t.Fatalf("the replica that lost its lease went on: %s %+v", ev.Kind(), ev.Payload)
	}
	if n := countContaining(f.exec.Commands(), "CLIENT UNPAUSE"); n != 0 {
		t.Fatalf("the replica that lost its lease ran the post-hook: %q", f.exec.Commands())
	}
	if l, _, err := f.svc.leases.Get(ctx, redisWorkload); err != nil || l.BackupID != "later" || l.State != lease.StateFrozen {
		t.Fatalf("the later freeze was disturbed: %+v %v", l, err)
	}
	if f.svc.ops.get(ref) != nil {
		t.Fatal("the replica still keeps the lost freeze in memory")
	}
}

// One backup id used for two workloads makes two backups, each frozen and
// resumed on its own.
func TestOneIDForTwoWorkloads(t *testing.T) {
	f := newFixture(t, Config{}, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	cache := events.Workload{Cluster: "dev", Namespace: "shop", Kind: events.KindDeployment, Name: "cache"}
	var cols []*eventstest.Collector
	for _, w := range []events.Workload{redisWorkload, cache} {
		if _, err := f.client.PublishBackupRequested(t.Context(), events.BackupRequested{BackupRef: events.BackupRef{BackupID: "same-id", Workload: w}}); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, eventstest.Collect(t.Context(), t, f.client, events.Filter{BackupID: "same-id", Name: w.Name}))
	}
	for i, col := range cols {
		evs := col.Until(10*time.Second, func(e events.Event) bool { return e.Kind() == events.KindQuiesced })
		f.snapshotted(t, evs[len(evs)-1].Payload.Ref())
		evs = col.Until(10*time.Second, events.IsTerminal)
		if r, ok := evs[len(evs)-1].Payload.(*events.Resumed); !ok || !r.Succeeded {
			t.Fatalf("workload %d: events %v", i, kinds(evs))
		}
	}
	cmds := f.exec.Commands()
	for _, pod := range []string{"redis-7d9f", "cache-5b2c"} {
		if countContaining(cmds, pod+"/redis: redis-cli -a "+password+" CLIENT PAUSE") != 1 || countContaining(cmds, pod+"/redis: redis-cli -a "+password+" CLIENT UNPAUSE") != 1 {
			t.Fatalf("pod %s was not frozen and resumed once: %q", pod, cmds)
		}
	}
}

// A stored request that is not a BackupRequested (a forged event on the
// request subject) fails the rebuild of a resume plan with an error, not a
// panic.
func TestRebuildRefusesAForgedRequest(t *testing.T) {
	f := newFixture(t, Config{}, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	ref := events.BackupRef{BackupID: "forged", Workload: redisWorkload}
	forged, err := events.NewEvent(events.RoleHooker.Source(), &events.Resumed{BackupRef: ref, Reason: "x"})
	if err != nil {
		t.Fatal(err)
	}
	f.svc.lookup = func(context.Context, events.Kind, events.BackupRef) (events.Event, error) { return forged, nil }
	if _, _, _, err := f.svc.rebuild(t.Context(), ref); err == nil || !strings.Contains(err.Error(), "resumed") {
		t.Fatalf("rebuild = %v, want an error naming the stored event's kind", err)
	}
}

// The holder enforces the freeze cap itself when no unlock comes (the event
// stream without a leader, every watchdog blind): here no watchdog runs at
// all, and the application is resumed a moment after the deadline.
func TestHolderResumesAtTheCapWithoutAnUnlock(t *testing.T) {
	f := newFixture(t, Config{MaxFreeze: 300 * time.Millisecond, WatchdogTick: time.Hour}, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	_, col := f.request(t) // nobody snapshots, no watchdog asks
	evs := col.Until(10*time.Second, events.IsTerminal)
	for _, e := range evs {
		if e.Kind() == events.KindUnlockRequested {
			t.Fatalf("events %v: the watchdog was meant to stay silent", kinds(evs))
		}
	}
	r, ok := evs[len(evs)-1].Payload.(*events.Resumed)
	if !ok || r.Succeeded || r.Reason != events.ResumeStaleLock {
		t.Fatalf("events %v, last %+v", kinds(evs), evs[len(evs)-1].Payload)
	}
	if n := countContaining(f.exec.Commands(), "CLIENT UNPAUSE"); n != 1 {
		t.Fatalf("post-hook ran %d times, want 1: %q", n, f.exec.Commands())
	}
	waitReleased(t, f.svc.leases)
}
