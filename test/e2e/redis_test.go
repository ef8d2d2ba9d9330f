package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/test/e2e/consistency"
	"github.com/freezeframe/freezeframe/test/e2e/demo"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// The demo's flow, through the Go client: a Redis with its password in a Secret and the
// demo's Blueprint, a writer writing numbered keys throughout, one backup. The snapshot,
// started in a fresh Redis, holds exactly the keys acknowledged before the pause.
func TestDemoFlow(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	ns := "flow"
	rig := startDemoRedisUnderWriter(t, c, ns)
	pass, up, client, w := rig.pass, rig.up, rig.client, rig.w
	defer w.Stop(5 * time.Second)

	id := requestBackup(t, up, client, ns, events.KindDeployment, demo.Workload)
	evs := followBackup(t, client, id).wait(t, 2*time.Minute)
	t.Logf("backup %s:\n%s", id, harness.Timeline(evs))
	requireKinds(t, evs, events.KindRequested, events.KindQuiesced, events.KindSnapshotted, events.KindResumed)
	q, _ := harness.Payload[events.Quiesced](evs)
	s, _ := harness.Payload[events.Snapshotted](evs)
	r, _ := harness.Payload[events.Resumed](evs)
	if !r.Succeeded || r.Reason != events.ResumeAfterSnapshot {
		t.Fatalf("resumed: reason %s, succeeded %v", r.Reason, r.Succeeded)
	}
	if q.Blueprint != demo.Blueprint || !slices.Equal(q.Volumes, []string{demo.Claim}) {
		t.Errorf("quiesced: blueprint %q, volumes %v", q.Blueprint, q.Volumes)
	}
	freeze := consistency.Freeze{From: q.QuiescedAt, Until: q.QuiescedAt.Add(r.FrozenFor.Std())}

	// Writes go on after the resume, and are not in the snapshot either.
	if _, err := w.WaitAckedAfter(ctxTimeout(t, 10*time.Second), freeze.Until.Add(50*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	writes, err := w.Stop(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}

	// The VolumeSnapshot: cut (creationTime, second precision) during the freeze.
	if len(s.Snapshots) != 1 || s.Snapshots[0].PVC != demo.Claim {
		t.Fatalf("snapshots %+v, want one of %s", s.Snapshots, demo.Claim)
	}
	// The snapshotter sees the cut on the bound content; the snapshot controller copies it
	// to the VolumeSnapshot a moment later.
	var vs *snapv1.VolumeSnapshot
	waitFor(t, 30*time.Second, "volumesnapshot "+s.Snapshots[0].Name+" shows its cut", func() (bool, error) {
		var err error
		vs, err = c.Snapshots.SnapshotV1().VolumeSnapshots(ns).Get(t.Context(), s.Snapshots[0].Name, metav1.GetOptions{})
		return err == nil && vs.Status != nil && vs.Status.CreationTime != nil, err
	})
	if src := vs.Spec.Source.PersistentVolumeClaimName; src == nil || *src != demo.Claim {
		t.Errorf("volumesnapshot source %v, want %s", src, demo.Claim)
	}
	cut := vs.Status.CreationTime.Time
	if cut.Before(freeze.From.Truncate(time.Second)) || cut.After(freeze.Until) {
		t.Errorf("cut at %s, outside the freeze %s..%s", cut, freeze.From, freeze.Until)
	}

	// A fresh Redis on a copy of the snapshot.
	dir := copyDir(t, snapshotDir(t, ns, vs.Name))
	fresh, err := c.RunServer(t.Context(), sandbox.Redis, filepath.Join(dir, sandbox.Redis), pass)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fresh.Stop)
	present, err := consistency.RedisNumberedKeys(ctxTimeout(t, 30*time.Second), addr(fresh), pass, "k")
	if err != nil {
		t.Fatal(err)
	}
	v := consistency.Check(writes, present, freeze)
	t.Logf("consistency:\n%s", v.Summary())
	t.Logf("writes paused for %s as the writer saw it; the hooker reports %s frozen", v.PausedFor, r.FrozenFor.Std())
	if !v.Consistent {
		t.Fatalf("snapshot not consistent: %s", strings.Join(v.Problems, "; "))
	}
	if v.LastAckedBefore < 300 {
		t.Errorf("only %d writes before the freeze", v.LastAckedBefore)
	}
}

// `make demo` itself, on the shared sandbox: the real CLI's `backup --wait`, the printed
// timeline and snapshot, and the verdict.
func TestDemoProgram(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	installCRD(t)
	var out strings.Builder
	res, err := demo.Run(t.Context(), demo.Config{Out: &out, Cluster: c, Bin: freezeframeBin(t), Namespace: "demo-program", WorkDir: t.TempDir()})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verdict.Consistent || !strings.Contains(out.String(), "\nVERDICT: consistent") {
		t.Fatalf("verdict: %+v", res.Verdict)
	}
	if !strings.Contains(res.CLIOutput, "backup "+res.BackupID+" succeeded") {
		t.Errorf("CLI output:\n%s", res.CLIOutput)
	}
	for _, want := range []string{"requested", "quiesced", "snapshotted", "resumed", "writes paused for", res.SnapshotPath} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}

// A workload whose pod mounts two PVCs gets two snapshots in one backup, each a copy of
// its own volume. Their class keeps them uploading (readyToUse false) for minutes: the
// application is resumed at the cut all the same.
func TestTwoVolumesTwoSnapshots(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	app := &redisApp{Namespace: "twovol", Name: "cache", Blueprint: "redis-hooks", ExtraClaims: []string{"journal"}}
	app.deploy(t)
	marker := app.writeMarker(t, "journal")
	if err := redisWrite(t.Context(), app.Server, "before-backup", 5*time.Second); err != nil {
		t.Fatal(err)
	}

	const class = "e2e-slow-upload"
	if _, err := harness.Apply(t.Context(), c, `apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata: {name: `+class+`}
driver: `+sandbox.DriverName+`
deletionPolicy: Delete
parameters: {readyDelay: 10m}
`); err != nil {
		t.Fatal(err)
	}

	up := startUp(t)
	client := connect(t, up)
	id := requestBackup(t, up, client, app.Namespace, events.KindDeployment, app.Name, class)
	evs := followBackup(t, client, id).wait(t, 2*time.Minute)
	t.Logf("backup %s:\n%s", id, harness.Timeline(evs))
	requireKinds(t, evs, events.KindRequested, events.KindQuiesced, events.KindSnapshotted, events.KindResumed)
	s, _ := harness.Payload[events.Snapshotted](evs)
	var pvcs []string
	for _, snap := range s.Snapshots {
		pvcs = append(pvcs, snap.PVC)
	}
	slices.Sort(pvcs)
	if want := []string{app.claim("data"), app.claim("journal")}; !slices.Equal(pvcs, want) {
		t.Fatalf("snapshots of %v, want %v", pvcs, want)
	}
	for _, snap := range s.Snapshots {
		// The snapshotter sees the cut on the bound content; the snapshot controller copies
		// it to the VolumeSnapshot a moment later.
		var vs *snapv1.VolumeSnapshot
		waitFor(t, 30*time.Second, "volumesnapshot "+snap.Name+" shows its cut", func() (bool, error) {
			var err error
			vs, err = c.Snapshots.SnapshotV1().VolumeSnapshots(app.Namespace).Get(t.Context(), snap.Name, metav1.GetOptions{})
			return err == nil && vs.Status != nil && vs.Status.CreationTime != nil, err
		})
		if *vs.Spec.Source.PersistentVolumeClaimName != snap.PVC {
			t.Fatalf("volumesnapshot %s: source %v, want %s", vs.Name, *vs.Spec.Source.PersistentVolumeClaimName, snap.PVC)
		}
		if vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse {
			t.Errorf("volumesnapshot %s is ready: the class should keep it uploading", vs.Name)
		}
		if snap.Class != class {
			t.Errorf("snapshot %s has class %q, want %s", snap.Name, snap.Class, class)
		}
		dir := snapshotDir(t, app.Namespace, snap.Name)
		switch snap.PVC {
		case app.claim("journal"):
			if got, err := os.ReadFile(filepath.Join(dir, "marker")); err != nil || string(got) != marker {
				t.Errorf("journal snapshot %s: marker %q, %v", dir, got, err)
			}
		case app.claim("data"):
			if _, err := os.Stat(filepath.Join(dir, sandbox.Redis, "appendonlydir")); err != nil {
				t.Errorf("data snapshot %s: %v", dir, err)
			}
		}
	}
	if r, _ := harness.Payload[events.Resumed](evs); !r.Succeeded {
		t.Fatalf("resumed %+v", r)
	}
}

// The watchdog on the sandbox: Redis frozen by CLIENT PAUSE, the snapshotter's
// VolumeSnapshot creation hung (held by the API proxy, so the cut never happens), a 3s
// freeze cap: the watchdog asks for the unlock, the hooker resumes, writes go on.
func TestWatchdogResumesStaleFreeze(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	app := &redisApp{Namespace: "watchdog", Name: "cache", Blueprint: "redis-hooks"}
	app.deploy(t)

	const maxFreeze = 3 * time.Second
	up, proxy := startUpHoldingSnapshots(t, "HOOKER_MAX_FREEZE="+maxFreeze.String())
	client := connect(t, up)

	w, err := consistency.StartRedisWriter(t.Context(), addr(app.Server), app.Password, "k", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop(5 * time.Second)
	if err := w.WaitAcked(ctxTimeout(t, 30*time.Second), 50); err != nil {
		t.Fatal(err)
	}

	id := requestBackup(t, up, client, app.Namespace, events.KindDeployment, app.Name)
	f := followBackup(t, client, id)
	qev := f.waitKind(t, events.KindQuiesced, time.Minute)
	q := qev.Payload.(*events.Quiesced)
	waitHeld(t, proxy)
	evs := f.wait(t, time.Minute)
	t.Logf("backup %s:\n%s", id, harness.Timeline(evs))
	requireKinds(t, evs, events.KindRequested, events.KindQuiesced, events.KindUnlockRequested, events.KindFailed, events.KindResumed)

	u, _ := harness.Payload[events.UnlockRequested](evs)
	var unlockAt time.Time
	for _, ev := range evs {
		if ev.Kind() == events.KindUnlockRequested {
			unlockAt = ev.Time()
		}
	}
	if unlockAt.Before(q.FreezeDeadline) || unlockAt.After(q.FreezeDeadline.Add(time.Second)) {
		t.Errorf("unlock requested at %s, want within 1s after the freeze deadline %s", unlockAt, q.FreezeDeadline)
	}
	if !strings.HasPrefix(u.RequestedBy, "watchdog/") {
		t.Errorf("unlock requested by %q", u.RequestedBy)
	}
	fail, _ := harness.Payload[events.BackupFailed](evs)
	r, _ := harness.Payload[events.Resumed](evs)
	if fail.Step != events.StepFreeze || r.Reason != events.ResumeStaleLock || r.Succeeded {
		t.Fatalf("failed step %s (%s); resumed reason %s, succeeded %v", fail.Step, fail.Reason, r.Reason, r.Succeeded)
	}

	// Writes were held for the whole freeze, and go on after the resume.
	until := q.QuiescedAt.Add(r.FrozenFor.Std())
	after, err := w.WaitAckedAfter(ctxTimeout(t, 10*time.Second), until)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WaitAcked(ctxTimeout(t, 10*time.Second), after.N+100); err != nil {
		t.Fatalf("writes after the resume: %v", err)
	}
	writes, err := w.Stop(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	v := consistency.Check(writes, nil, consistency.Freeze{From: q.QuiescedAt, Until: until})
	if v.Held == 0 || v.HeldFor < maxFreeze-500*time.Millisecond {
		t.Errorf("write held by the pause: k:%d for %s, want about %s", v.Held, v.HeldFor, maxFreeze)
	}
	t.Logf("writes paused for %s until the watchdog's unlock", v.PausedFor)
	if err := redisWrite(t.Context(), app.Server, "after-unlock", 2*time.Second); err != nil {
		t.Fatalf("database not writable after the unlock: %v", err)
	}
	// The cut never happened: no VolumeSnapshot exists.
	list, err := c.Snapshots.SnapshotV1().VolumeSnapshots(app.Namespace).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("%d volumesnapshots exist, want none", len(list.Items))
	}
}
