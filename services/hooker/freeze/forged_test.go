package freeze

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

// Forged events: what anything with a connection to NATS could publish if
// the bus's permissions let it (none configured, a grant too wide). The
// bus is not the only authority: each is refused on its source, says why,
// and the backup it aimed at ends as it would have without it.

// forge puts an event from source on the stream as it is, past the
// publisher's own check, under id.
func (f *fixture) forge(t *testing.T, source string, p events.Payload, id string) {
	t.Helper()
	ev, err := events.NewEvent(source, p, events.WithID(id))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.js.PublishMsg(t.Context(), msg, jetstream.WithMsgID(id)); err != nil {
		t.Fatal(err)
	}
}

// refused waits for a hooker's consumer to log that it terminated event id
// for its source, and returns the logged error.
func (f *fixture) refused(t *testing.T, id string) string {
	t.Helper()
	var logged string
	eventstest.Eventually(t, 10*time.Second, "the hooker refuses "+id+" for its source", func() bool {
		for line := range strings.Lines(f.logText()) {
			var rec struct{ Msg, Reason, Err string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "terminating event from a source not allowed to emit it" &&
				rec.Reason == "forbidden-source" && strings.Contains(rec.Err, id) {
				logged = rec.Err
				return true
			}
		}
		return false
	})
	return logged
}

// frozen returns the Quiesced of a backup just requested.
func frozen(t *testing.T, col *eventstest.Collector) events.BackupRef {
	t.Helper()
	col.Next(5 * time.Second) // requested
	q := col.Next(5 * time.Second)
	if q.Kind() != events.KindQuiesced {
		t.Fatalf("want Quiesced, got %s %+v", q.Kind(), q.Payload)
	}
	return q.Payload.Ref()
}

// stillFrozen checks that the post-hook has not run and the freeze is still
// held by holder.
func (f *fixture) stillFrozen(t *testing.T, svc *Service, ref events.BackupRef, holder string) {
	t.Helper()
	if n := countContaining(f.exec.Commands(), "CLIENT UNPAUSE"); n != 0 {
		t.Fatalf("the application was resumed: %q", f.exec.Commands())
	}
	l, _, err := svc.leases.Get(t.Context(), ref.Workload)
	if err != nil || l.BackupID != ref.BackupID || l.Holder != holder {
		t.Fatalf("freeze lease %+v (%v), want backup %s held by %s", l, err, ref.BackupID, holder)
	}
}

// An UnlockRequested saying the holder is gone, from a source that may not
// send one (here the snapshotter's), while the freeze is held: refused,
// the database stays frozen for its snapshot, and the backup succeeds.
func TestForgedUnlockDoesNotThaw(t *testing.T) {
	f := newFixture(t, Config{}, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	_, col := f.request(t)
	ref := frozen(t, col)

	f.forge(t, events.RoleSnapshotter.Source(), &events.UnlockRequested{BackupRef: ref, Reason: "lease of hooker-0 expired",
		Holder: "hooker-0", HolderGone: true, RequestedBy: "watchdog/hooker-1"}, "forged-unlock")
	why := f.refused(t, "forged-unlock")
	if !strings.Contains(why, "unlock-requested from source /freezeframe/snapshotter: only /freezeframe/hooker, /freezeframe/cli or /freezeframe/client may emit it") {
		t.Errorf("refusal %q does not say who may unlock", why)
	}
	f.stillFrozen(t, f.svc, ref, "hooker-0")

	f.snapshotted(t, ref)
	evs := col.Until(10*time.Second, events.IsTerminal)
	r, ok := evs[len(evs)-1].Payload.(*events.Resumed)
	if !ok || !r.Succeeded || r.Reason != events.ResumeAfterSnapshot {
		t.Fatalf("events %v, last %+v: want a successful resume after the snapshot", kinds(evs), evs[len(evs)-1].Payload)
	}
	for _, e := range evs {
		if e.Kind() == events.KindUnlockRequested || e.Kind() == events.KindFailed {
			t.Errorf("events %v: the forged unlock reached a reader", kinds(evs))
		}
	}
	if n := countContaining(f.exec.Commands(), "CLIENT UNPAUSE"); n != 1 {
		t.Fatalf("post-hook ran %d times, want 1: %q", n, f.exec.Commands())
	}
}

// A Resumed from the CLI's source, stored while the freeze is held: when
// the holder dies, the replica taking over does not read it as "already
// resumed", and runs the post-hook.
func TestForgedResumedDoesNotHideAStuckFreeze(t *testing.T) {
	f := newEnv(t, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	a, stopA := f.start(t, Config{}, "hooker-a")
	_, col := f.request(t)
	ref := frozen(t, col)

	f.forge(t, events.SourceCLI, &events.Resumed{BackupRef: ref, ResumedAt: time.Now(), Reason: events.ResumeAfterSnapshot, Succeeded: true}, "forged-resumed")
	// The stream's last Resumed of the backup is the forged one; reading
	// it back says why it does not count.
	_, err := events.NewStreamHistory(f.js, "").Lookup(t.Context(), events.KindResumed, ref)
	if !errors.Is(err, events.ErrForbiddenSource) || !strings.Contains(err.Error(), "resumed from source /freezeframe/cli: only /freezeframe/hooker may emit it") {
		t.Fatalf("looking up the forged Resumed: %v, want ErrForbiddenSource saying who may emit it", err)
	}
	f.stillFrozen(t, a, ref, "hooker-a")

	b, _ := f.start(t, Config{}, "hooker-b")
	stopA() // renewals stop, as with kill -9
	evs := col.Until(15*time.Second, events.IsTerminal)
	r, ok := evs[len(evs)-1].Payload.(*events.Resumed)
	if !ok || r.Succeeded || r.Reason != events.ResumeStaleLock {
		t.Fatalf("events %v, last %+v: want the watchdog's stale-lock resume", kinds(evs), evs[len(evs)-1].Payload)
	}
	// Armed, the post-hook ran as hooker-a stopped, and again by hooker-b.
	if n := countContaining(f.exec.Commands(), "CLIENT UNPAUSE"); n != 2 {
		t.Fatalf("post-hook ran %d times, want 2 (armed in hooker-a, then by hooker-b): %q", n, f.exec.Commands())
	}
	end, err := b.leases.Ended(t.Context(), ref)
	if err != nil || end.Succeeded || end.Reason != events.ResumeStaleLock {
		t.Fatalf("recorded end %+v (%v), want a failed stale-lock end", end, err)
	}
	waitReleased(t, b.leases)
}

// A Snapshotted from the hooker's source (not the snapshotter's) while the
// freeze is held: refused, the freeze goes on, and the backup does not end
// as a success; an operator's unlock (a source that may) then resumes it.
func TestForgedSnapshottedDoesNotResumeWithSuccess(t *testing.T) {
	f := newFixture(t, Config{}, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	_, col := f.request(t)
	ref := frozen(t, col)

	f.forge(t, events.RoleHooker.Source(), &events.Snapshotted{BackupRef: ref, Mode: events.SnapshotModeVolume,
		Snapshots: []events.Snapshot{{Name: "forged", Namespace: ref.Workload.Namespace, PVC: "data", CutAt: time.Now()}}}, "forged-snapshotted")
	why := f.refused(t, "forged-snapshotted")
	if !strings.Contains(why, "snapshotted from source /freezeframe/hooker: only /freezeframe/snapshotter may emit it") {
		t.Errorf("refusal %q does not say who may report a snapshot", why)
	}
	f.stillFrozen(t, f.svc, ref, "hooker-0")

	if _, _, err := events.NewPublisher(f.js, events.RoleOperator.Source()).Publish(t.Context(),
		&events.UnlockRequested{BackupRef: ref, Reason: events.ResumeOperator, RequestedBy: "operator/alice"}); err != nil {
		t.Fatal(err)
	}
	evs := col.Until(10*time.Second, events.IsTerminal)
	r, ok := evs[len(evs)-1].Payload.(*events.Resumed)
	if !ok || r.Succeeded || r.Reason != events.ResumeOperator {
		t.Fatalf("events %v, last %+v: want the operator's failed resume", kinds(evs), evs[len(evs)-1].Payload)
	}
	for _, e := range evs {
		if e.Kind() == events.KindSnapshotted {
			t.Errorf("events %v: the forged Snapshotted reached a reader", kinds(evs))
		}
	}
	end, err := f.svc.leases.Ended(t.Context(), ref)
	if err != nil || end.Succeeded {
		t.Fatalf("recorded end %+v (%v), want a failure", end, err)
	}
}
