package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/test/e2e/demo"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// The premise of the dead man's switch: when the process holding an exec stream is
// killed, the command in the pod sees end-of-file on its stdin at once (here through the
// real apiserver and kwok, whose exec runs a local process).
func TestDeadmanKilledExecClientEndsStdin(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	db, err := c.StartRedis(t.Context(), sandbox.DatabaseOptions{Namespace: "deadman-eof", Name: "cache"})
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "eof")
	stdin, feed, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Close()
	client := exec.Command("kubectl", "--kubeconfig", c.Kubeconfig, "exec", "-i", "-n", db.Namespace, db.Pod, "-c", db.Container, "--",
		"sh", "-c", `echo ready; cat >/dev/null; date +%s%N > "$1"`, "probe", marker)
	client.Stdin = stdin
	out, err := client.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	// Wait until the command runs in the pod.
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("exec did not start: %q %v", buf, err)
	}
	killed := time.Now()
	if err := client.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = client.Wait()
	waitFor(t, 30*time.Second, "the command in the pod sees EOF on stdin", func() (bool, error) {
		_, err := os.Stat(marker)
		return err == nil, nil
	})
	t.Logf("stdin ended in the pod %s after the exec client was killed", time.Since(killed).Round(time.Millisecond))
}

// deadmanRig is the demo's Redis under a writer, with freezeframe up whose snapshotter's
// cuts are held (so that a freeze lasts until the test ends it).
type deadmanRig struct {
	demoRedisRig
	ns    string
	proxy *harness.APIProxy
}

func startDeadmanRig(t testing.TB, ns string) *deadmanRig {
	t.Helper()
	var proxy *harness.APIProxy
	rig := startDemoRedisUnderWriterWith(t, sandbox.Shared(t), ns, func(t testing.TB) *harness.Up {
		// The default stale period (10 s): the switch may fire only while the freeze
		// record vouches for the freeze, half of it past each renewal (see
		// docs/blueprints.md); a short one would leave too little.
		up, p := startUpHoldingSnapshots(t)
		proxy = p
		return up
	})
	return &deadmanRig{demoRedisRig: rig, ns: ns, proxy: proxy}
}

// killWhileFrozen requests a backup, waits until it is quiesced and its cut is held (so
// nothing is cut), then kill -9s freezeframe up, the only hooker, and waits until the
// writer's writes are acknowledged again. It returns the backup, its Quiesced, and how
// long after the kill the application was writable again.
func (r *deadmanRig) killWhileFrozen(t testing.TB) (id string, q *events.Quiesced, writableAfter time.Duration) {
	t.Helper()
	r.proxy.Hold(harness.IsSnapshotCreate)
	id = requestBackup(t, r.up, r.client, r.ns, events.KindDeployment, demo.Workload)
	qev := followBackup(t, r.client, id).waitKind(t, events.KindQuiesced, time.Minute)
	q = qev.Payload.(*events.Quiesced)
	waitHeld(t, r.proxy)
	killed := time.Now()
	if err := r.up.Kill(); err != nil {
		t.Fatal(err)
	}
	// CLIENT PAUSE in the demo's blueprint lasts 300 s: only the post-hook ends it.
	w, err := r.w.WaitAckedAfter(ctxTimeout(t, 30*time.Second), killed)
	if err != nil {
		t.Fatalf("the application is not writable after the kill of the only hooker: %v", err)
	}
	if r.up.Running() {
		t.Fatal("freezeframe up is running again")
	}
	if !w.Issued.Before(killed) {
		// The application was not frozen at the kill: the figure would mean nothing.
		t.Fatalf("write %d, the first acknowledged after the kill, was sent %s after it: the writes were not held by the freeze", w.N, w.Issued.Sub(killed))
	}
	return id, q, w.Acked.Sub(killed)
}

// restartAndEnd starts freezeframe up again, with the snapshots let through, and waits
// for the backup to end.
func (r *deadmanRig) restartAndEnd(t testing.TB, id string) []events.Event {
	t.Helper()
	r.proxy.Release()
	if err := r.up.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.client = connect(t, r.up)
	return followBackup(t, r.client, id).wait(t, 2*time.Minute)
}

// kill -9 of the only hooker while an application is frozen: the armed post-hook in the
// pod sees its stream end and unfreezes the application by itself (the dead man's
// switch), with no freezeframe process alive. Restarted, freezeframe fails that backup
// (the switch may have fired mid-cut), and the workload is free for a new backup.
func TestDeadmanSwitchUnfreezesAfterKill(t *testing.T) {
	t.Parallel()
	r := startDeadmanRig(t, "deadman")
	defer r.w.Stop(5 * time.Second)

	id, q, writableAfter := r.killWhileFrozen(t)
	if !q.PostHookArmed {
		t.Errorf("quiesced %+v: want postHookArmed", q)
	}
	t.Logf("kill -9 of freezeframe up while frozen: writes acknowledged again %s after the kill, with no freezeframe process alive",
		writableAfter.Round(time.Millisecond))

	evs := r.restartAndEnd(t, id)
	t.Logf("backup %s:\n%s", id, harness.Timeline(evs))
	if last := evs[len(evs)-1]; events.Succeeded(last) {
		t.Fatal("backup succeeded although its armed post-hook ran on its own while frozen")
	}
	if _, ok := harness.Payload[events.Snapshotted](evs); ok {
		if len(harness.Payloads[events.BackupFailed](evs)) == 0 {
			t.Error("snapshotted, and no BackupFailed says the snapshot is not consistent")
		}
	}

	// The workload is free: a new backup freezes, is cut and succeeds.
	next := requestBackup(t, r.up, r.client, r.ns, events.KindDeployment, demo.Workload)
	evs = followBackup(t, r.client, next).wait(t, 2*time.Minute)
	requireKinds(t, evs, events.KindRequested, events.KindQuiesced, events.KindSnapshotted, events.KindResumed)
	if res, _ := harness.Payload[events.Resumed](evs); !res.Succeeded {
		t.Fatalf("the next backup: %+v", res)
	}
}
