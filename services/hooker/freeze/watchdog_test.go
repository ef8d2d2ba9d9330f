package freeze

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/hooker/blueprint"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

func TestWatchdogUnlocksAtTheDeadline(t *testing.T) {
	f := newFixture(t, Config{MaxFreeze: 500 * time.Millisecond}, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	_, col := f.request(t) // no snapshotter: the snapshot never comes
	evs := col.Until(10*time.Second, events.IsTerminal)
	var deadline time.Time
	var unlock events.Event
	for _, e := range evs {
		switch p := e.Payload.(type) {
		case *events.Quiesced:
			deadline = p.FreezeDeadline
		case *events.UnlockRequested:
			unlock = e
		}
	}
	if unlock.Payload == nil || deadline.IsZero() {
		t.Fatalf("events %v: want Quiesced then UnlockRequested", kinds(evs))
	}
	if late := unlock.Time().Sub(deadline); late < 0 || late > time.Second {
		t.Errorf("UnlockRequested %s after the freeze deadline, want within 1s", late)
	}
	if r, ok := evs[len(evs)-1].Payload.(*events.Resumed); !ok || r.Reason != events.ResumeStaleLock {
		t.Fatalf("last event %v", evs[len(evs)-1].Payload)
	}
	waitReleased(t, f.svc.leases)
}

// A hooker that dies while holding a freeze: another replica's watchdog
// sees the lease go stale, and that replica takes the resume over.
func TestAnotherReplicaResumesWhenTheHolderDies(t *testing.T) {
	f := newEnv(t, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	_, stopA := f.start(t, Config{}, "hooker-a")
	_, col := f.request(t)
	col.Next(5 * time.Second) // requested
	if q := col.Next(5 * time.Second); q.Kind() != events.KindQuiesced {
		t.Fatalf("want Quiesced, got %s", q.Kind())
	}
	b, _ := f.start(t, Config{}, "hooker-b")
	stopA() // renewals stop, as with kill -9
	evs := col.Until(15*time.Second, events.IsTerminal)
	last := evs[len(evs)-1]
	r, ok := last.Payload.(*events.Resumed)
	if !ok || r.Succeeded || r.Reason != events.ResumeStaleLock {
		t.Fatalf("events %v, last %+v", kinds(evs), last.Payload)
	}
	var unlock *events.UnlockRequested
	for _, e := range evs {
		if u, ok := e.Payload.(*events.UnlockRequested); ok {
			unlock = u
		}
	}
	if unlock == nil || !unlock.HolderGone || unlock.Holder != "hooker-a" || !strings.Contains(unlock.Reason, "hooker-a") {
		t.Errorf("unlock %+v", unlock)
	}
	// The post-hook was armed: hooker-a runs it as it stops (as the dead
	// man's switch does when it is killed), and hooker-b runs it again.
	cmds := f.exec.Commands()
	if len(cmds) != 3 || !strings.Contains(cmds[1], "CLIENT UNPAUSE") || !strings.Contains(cmds[2], "CLIENT UNPAUSE") {
		t.Fatalf("post-hook not run by the stopping holder and the surviving replica: %q", cmds)
	}
	waitReleased(t, b.leases)
}

// The only hooker restarts (same replica name) with its lease still in the
// bucket: it reconciles the lease and resumes.
func TestRestartedHookerReleasesItsStaleLease(t *testing.T) {
	f := newEnv(t, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	_, stop := f.start(t, Config{}, "hooker-0")
	_, col := f.request(t)
	col.Next(5 * time.Second)
	if q := col.Next(5 * time.Second); q.Kind() != events.KindQuiesced {
		t.Fatalf("want Quiesced, got %s", q.Kind())
	}
	stop()
	store, err := lease.Open(t.Context(), f.js, lease.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if held, _, err := store.Get(t.Context(), redisWorkload); err != nil || held.Holder != "hooker-0" {
		t.Fatalf("lease before the restart: %+v %v", held, err)
	}
	again, _ := f.start(t, Config{}, "hooker-0")
	evs := col.Until(15*time.Second, events.IsTerminal)
	if r, ok := evs[len(evs)-1].Payload.(*events.Resumed); !ok || r.Succeeded {
		t.Fatalf("events %v", kinds(evs))
	}
	waitReleased(t, again.leases)
}

func TestSecondBackupOfAFrozenWorkloadWaits(t *testing.T) {
	f := newFixture(t, Config{}, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	first, col1 := f.request(t)
	col1.Next(5 * time.Second)
	q := col1.Next(5 * time.Second)
	if q.Kind() != events.KindQuiesced {
		t.Fatalf("want Quiesced, got %s", q.Kind())
	}
	second, col2 := f.request(t)
	col2.Next(5 * time.Second) // requested
	if ev, quiet := col2.Quiet(time.Second); !quiet {
		t.Fatalf("second backup went on while the first held the freeze: %s %+v", ev.Kind(), ev.Payload)
	}
	if _, _, err := events.NewPublisher(f.js, events.RoleSnapshotter.Source()).Publish(t.Context(), &events.Snapshotted{BackupRef: q.Payload.Ref(), Mode: events.SnapshotModeVolume, Snapshots: []events.Snapshot{{Name: "s", Namespace: "shop", PVC: "data", CutAt: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	col1.Until(10*time.Second, events.IsTerminal)
	// Redelivered with backoff, the second backup now freezes.
	evs := col2.Until(20*time.Second, func(e events.Event) bool { return e.Kind() == events.KindQuiesced })
	if evs[len(evs)-1].BackupID() != second || first == second {
		t.Fatalf("events %v", kinds(evs))
	}
}

// waitReleased polls until the workload's lease is gone: it is released
// right after Resumed is published.
func waitReleased(t *testing.T, store *lease.Store) {
	t.Helper()
	eventstest.Eventually(t, 5*time.Second, "lease released after the resume", func() bool {
		_, _, err := store.Get(t.Context(), redisWorkload)
		return errors.Is(err, lease.ErrNotHeld)
	})
}

func TestBlueprintCapsTheFreeze(t *testing.T) {
	bp := redisBlueprint("KubeExec")
	bp.SetAnnotations(map[string]string{blueprint.AnnotationMaxFreeze: "400ms"})
	f := newFixture(t, Config{MaxFreeze: 5 * time.Minute}, bp, map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	_, col := f.request(t)
	evs := col.Until(10*time.Second, events.IsTerminal)
	var q *events.Quiesced
	for _, e := range evs {
		if p, ok := e.Payload.(*events.Quiesced); ok {
			q = p
		}
	}
	if q == nil || q.FreezeDeadline.Sub(q.QuiescedAt) > 400*time.Millisecond {
		t.Fatalf("quiesced %+v: want a deadline within the blueprint's 400ms cap", q)
	}
	if r, ok := evs[len(evs)-1].Payload.(*events.Resumed); !ok || r.Reason != events.ResumeStaleLock {
		t.Fatalf("events %v", kinds(evs))
	}
}
