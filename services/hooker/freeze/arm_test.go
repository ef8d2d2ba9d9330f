//go:build unix

package freeze

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/hooker/armed"
	"github.com/freezeframe/freezeframe/services/hooker/blueprint"
	"github.com/freezeframe/freezeframe/services/hooker/podexec/podexectest"
)

// localBlueprint's hooks are local shell commands that append their name
// to journal (podexectest.Local runs them as the pod would); the post-hook
// has an armed phase "resume" and, when attended is set, an attended phase
// "notify".
func localBlueprint(journal string, attended bool) *unstructured.Unstructured {
	return localBlueprintWaiting(journal, attended, "")
}

// localBlueprintWaiting is localBlueprint whose pre-hook, when gate is set,
// waits for the file gate to exist before it freezes.
func localBlueprintWaiting(journal string, attended bool, gate string) *unstructured.Unstructured {
	phase := func(name string) map[string]any {
		return map[string]any{"func": "KubeExec", "name": name, "args": map[string]any{
			"namespace": "{{ .Deployment.Namespace }}", "pod": "{{ index .Deployment.Pods 0 }}", "container": "redis",
			"command": []any{"sh", "-c", `echo ` + name + ` >> "$1"`, "hook", journal},
		}}
	}
	post := []any{phase("resume")}
	meta := map[string]any{"name": "local-hooks", "namespace": "kanister"}
	if attended {
		post = append(post, phase("notify"))
		meta["annotations"] = map[string]any{blueprint.AnnotationAttendedPhases: "notify"}
	}
	pre := phase("freeze")
	if gate != "" {
		pre["args"].(map[string]any)["command"] = []any{"sh", "-c", `while [ ! -e "$2" ]; do sleep 0.01; done; echo freeze >> "$1"`, "hook", journal, gate}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cr.kanister.io/v1alpha1", "kind": "Blueprint", "metadata": meta,
		"actions": map[string]any{
			"backupPrehook":  map[string]any{"phases": []any{pre}},
			"backupPosthook": map[string]any{"phases": post},
		},
	}}
}

// localFixture is a hooker whose execs run as local processes, reported
// on started.
func localFixture(t *testing.T, attended bool) (f *fixture, journal string, started chan *podexectest.LocalProc) {
	journal = filepath.Join(t.TempDir(), "journal")
	f = newFixture(t, Config{}, localBlueprint(journal, attended), map[string]string{AnnotationKanisterBlueprint: "local-hooks"})
	started = make(chan *podexectest.LocalProc, 16)
	f.svc.exec = &podexectest.Local{Started: started}
	return f, journal, started
}

func readJournal(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// quiesced waits for the backup's Quiesced.
func quiesced(t *testing.T, col interface {
	Next(time.Duration) events.Event
}) *events.Quiesced {
	t.Helper()
	col.Next(5 * time.Second) // requested
	q := col.Next(10 * time.Second)
	qp, ok := q.Payload.(*events.Quiesced)
	if !ok {
		t.Fatalf("want Quiesced, got %s %+v", q.Kind(), q.Payload)
	}
	return qp
}

func TestArmedPostHookResumesOnItsStream(t *testing.T) {
	f, journal, started := localFixture(t, true)
	_, col := f.request(t)
	q := quiesced(t, col)
	if !q.PostHookArmed {
		t.Fatal("Quiesced does not say the post-hook is armed")
	}
	// Armed before the pre-hook ran: the first exec is the armed one.
	first := <-started
	if _, _, ok := armed.Unwrap(first.Cmd.Args); !ok {
		t.Fatalf("first exec %q, want the armed post-hook", first.Cmd.Args)
	}
	if got := readJournal(t, journal); got != "freeze\n" {
		t.Fatalf("journal before the resume %q: the armed post-hook must wait", got)
	}
	f.snapshotted(t, q.BackupRef)
	evs := col.Until(10*time.Second, events.IsTerminal)
	r, ok := evs[len(evs)-1].Payload.(*events.Resumed)
	if !ok || !r.Succeeded {
		t.Fatalf("events %v, last %+v: want a successful resume", kinds(evs), evs[len(evs)-1].Payload)
	}
	if got := readJournal(t, journal); got != "freeze\nresume\nnotify\n" {
		t.Errorf("journal %q: want the phases in order, each once", got)
	}
	if len(r.Hooks) != 2 || r.Hooks[0].Phase != "resume" || r.Hooks[1].Phase != "notify" {
		t.Errorf("resumed hooks %+v", r.Hooks)
	}
	// The attended phase ran as an ordinary exec, never armed.
	for range 2 {
		proc := <-started
		if _, _, ok := armed.Unwrap(proc.Cmd.Args); ok {
			t.Errorf("an attended phase was armed: %q", proc.Cmd.Args)
		}
	}
}

func TestLostArmFailsTheBackupAndRunsThePostHookAgain(t *testing.T) {
	f, journal, started := localFixture(t, false)
	_, col := f.request(t)
	q := quiesced(t, col)
	arm := <-started
	arm.Stdin.Close() // the stream breaks: the switch fires (or, past its limit, exits)
	o := f.svc.ops.get(q.BackupRef)
	eventuallyLost := func() bool {
		if !o.take(t.Context()) {
			return false
		}
		defer o.give()
		return o.plan.arms.lost() != nil
	}
	eventstest.Eventually(t, 10*time.Second, "the armed exec's end is noticed", eventuallyLost)
	f.snapshotted(t, q.BackupRef)
	evs := col.Until(10*time.Second, events.IsTerminal)
	got := kinds(evs)
	if len(got) != 3 || got[0] != events.KindSnapshotted || got[1] != events.KindFailed || got[2] != events.KindResumed {
		t.Fatalf("events after the snapshot %v, want snapshotted, failed, resumed", got)
	}
	fail := evs[1].Payload.(*events.BackupFailed)
	if fail.Step != events.StepFreeze || !strings.Contains(fail.Reason, "armed post-hook ended before the resume") ||
		!strings.Contains(fail.Reason, "phase resume") || !strings.Contains(fail.Reason, "redis-7d9f") || !strings.Contains(fail.Reason, "writable") {
		t.Errorf("failure %+v: want it to name the phase and pod and say the application may have been writable", fail)
	}
	if r := evs[2].Payload.(*events.Resumed); r.Succeeded || r.Reason != events.ResumeAfterFailure {
		t.Errorf("resumed %+v: want a failed resume", r)
	}
	// At least once: the resume ran the post-hook as an ordinary exec.
	if n := strings.Count(readJournal(t, journal), "resume\n"); n < 1 {
		t.Errorf("journal %q: the post-hook never ran", readJournal(t, journal))
	}
}

// An armed post-hook that ends while the pre-hook runs: the backup is not
// announced as quiesced, it fails, and the post-hook runs at once.
func TestArmLostDuringThePreHookFailsBeforeQuiesced(t *testing.T) {
	dir := t.TempDir()
	journal, gate := filepath.Join(dir, "journal"), filepath.Join(dir, "gate")
	f := newFixture(t, Config{}, localBlueprintWaiting(journal, false, gate), map[string]string{AnnotationKanisterBlueprint: "local-hooks"})
	started := make(chan *podexectest.LocalProc, 16)
	f.svc.exec = &podexectest.Local{Started: started}
	id, col := f.request(t)
	arm := <-started // armed before the pre-hook, which waits for the gate
	if _, _, ok := armed.Unwrap(arm.Cmd.Args); !ok {
		t.Fatalf("first exec %q, want the armed post-hook", arm.Cmd.Args)
	}
	// The op's plan was set before the pre-hook started (its exec reported on
	// started), and is not written again during the freeze.
	<-started
	p := f.svc.ops.get(events.BackupRef{BackupID: id, Workload: redisWorkload}).plan
	arm.Stdin.Close()
	eventstest.Eventually(t, 10*time.Second, "the armed exec's end is noticed", func() bool { return p.arms.lost() != nil })
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	evs := col.Until(10*time.Second, events.IsTerminal)
	got := kinds(evs)
	if len(got) != 3 || got[0] != events.KindRequested || got[1] != events.KindFailed || got[2] != events.KindResumed {
		t.Fatalf("events %v, want requested, failed, resumed: nothing quiesced", got)
	}
	if fail := evs[1].Payload.(*events.BackupFailed); !strings.Contains(fail.Reason, "armed post-hook ended before the resume") || !fail.ResumePending {
		t.Errorf("failure %+v", fail)
	}
	if r := evs[2].Payload.(*events.Resumed); r.Succeeded || r.Reason != events.ResumeAfterFailure {
		t.Errorf("resumed %+v", r)
	}
	if n := strings.Count(readJournal(t, journal), "resume\n"); n < 1 {
		t.Errorf("journal %q: the post-hook never ran", readJournal(t, journal))
	}
}

// A replica that takes over a freeze whose Quiesced says the post-hook was armed fails
// the backup even after a snapshot (the holder's switch may have fired mid-cut), and
// runs the post-hook itself; the holder, its lease lost, disarms its arm rather than run
// it.
func TestTakeoverOfAnArmedFreezeFailsTheBackup(t *testing.T) {
	f := newEnv(t, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	a, _ := f.start(t, Config{}, "hooker-a")
	_, col := f.request(t)
	q := quiesced(t, col)
	if !q.PostHookArmed {
		t.Fatal("Quiesced does not say the post-hook is armed")
	}
	b, _ := f.start(t, Config{}, "hooker-b")
	// As after a Snapshotted whose holder is gone.
	if err := b.resume(t.Context(), q.BackupRef, events.ResumeAfterSnapshot, true, nil); err != nil {
		t.Fatal(err)
	}
	evs := col.Until(10*time.Second, events.IsTerminal)
	var fail *events.BackupFailed
	for _, e := range evs {
		if p, ok := e.Payload.(*events.BackupFailed); ok {
			fail = p
		}
	}
	if fail == nil || !strings.Contains(fail.Reason, "armed the post-hook is gone") {
		t.Fatalf("events %v, failure %+v: want the takeover to fail the backup for its armed post-hook", kinds(evs), fail)
	}
	if r, ok := evs[len(evs)-1].Payload.(*events.Resumed); !ok || r.Succeeded || r.Reason != events.ResumeAfterFailure {
		t.Fatalf("last %+v: want a failed resume", evs[len(evs)-1].Payload)
	}
	// hooker-a learns its lease is gone at its next renewal and disarms.
	eventstest.Eventually(t, 10*time.Second, "hooker-a drops the freeze", func() bool { return a.ops.get(q.BackupRef) == nil })
	if n := countContaining(f.exec.Commands(), "CLIENT UNPAUSE"); n != 1 {
		t.Fatalf("post-hook ran %d times, want once, by hooker-b: %q", n, f.exec.Commands())
	}
}
