package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/test/e2e/consistency"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// Config configures Run. The zero value runs the whole demo on a new sandbox.
type Config struct {
	// Out receives everything the demo shows; os.Stdout when nil.
	Out io.Writer
	// Cluster is a running sandbox to use; when nil Run starts one (building it first if
	// needed) and stops it at the end.
	Cluster *sandbox.Cluster
	// Bin is a freezeframe binary; when empty Run builds cmd/freezeframe.
	Bin string
	// Namespace of the demo application; "demo" when empty.
	Namespace string
	// WorkDir keeps the freezeframe log, NATS data and the restored copy; a temporary
	// directory (removed at the end unless Keep) when empty.
	WorkDir string
	// Keep leaves everything running after the verdict until ctx ends.
	Keep bool
}

// Result is what the demo found.
type Result struct {
	BackupID string
	// Events are the backup's events in order.
	Events []events.Event
	// Snapshot is the VolumeSnapshot of the Redis volume; SnapshotPath is the directory
	// holding its content.
	Snapshot     *snapv1.VolumeSnapshot
	SnapshotPath string
	// CLIOutput is what `freezeframe backup --wait` printed, RestoreOutput what
	// `freezeframe restore --wait` printed.
	CLIOutput     string
	RestoreOutput string
	Verdict       consistency.Verdict
}

// Run brings up the sandbox (unless given one), deploys the demo application and its
// Blueprint, runs `freezeframe up`, backs the application up with `freezeframe backup
// --wait` while a writer writes numbered keys, restores it with `freezeframe restore
// --wait` into another namespace, and proves it consistent by starting a fresh Redis (a
// pod of the same Deployment) on the restored claim. It returns an error when anything fails; an
// inconsistent snapshot is no error, its Verdict says so.
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "demo"
	}
	d := &run{cfg: cfg, out: cfg.Out, ns: cfg.Namespace}
	defer func() {
		if terr := d.tearDown(); terr != nil && err == nil {
			err = fmt.Errorf("tear down: %w", terr)
		}
	}()
	if err := d.setUp(ctx); err != nil {
		return nil, err
	}
	res, err = d.backup(ctx)
	if err != nil {
		return res, err
	}
	if cfg.Keep {
		d.keep(ctx)
	}
	return res, nil
}

type run struct {
	cfg     Config
	out     io.Writer
	ns      string
	cluster *sandbox.Cluster
	work    string
	bin     string
	up      *harness.Up
	db      *sandbox.Server
	pass    string
	undo    []func() error
}

func (d *run) step(format string, args ...any) {
	fmt.Fprintf(d.out, "\n== %s\n", fmt.Sprintf(format, args...))
}

func (d *run) logf(format string, args ...any) {
	fmt.Fprintf(d.out, format+"\n", args...)
}

// deferUndo registers f for the teardown, which runs the last registered first.
func (d *run) deferUndo(f func() error) { d.undo = append(d.undo, f) }

func (d *run) tearDown() error {
	var errs []error
	for i := len(d.undo) - 1; i >= 0; i-- {
		errs = append(errs, d.undo[i]())
	}
	return errors.Join(errs...)
}

func (d *run) setUp(ctx context.Context) error {
	d.work = d.cfg.WorkDir
	if d.work == "" {
		dir, err := os.MkdirTemp("", "freezeframe-demo-")
		if err != nil {
			return err
		}
		d.work = dir
		d.deferUndo(func() error { return os.RemoveAll(dir) })
	}

	d.step("sandbox: a real Kubernetes control plane on loopback")
	if d.cfg.Cluster != nil {
		d.cluster = d.cfg.Cluster
		d.logf("using the running sandbox (KUBECONFIG=%s)", d.cluster.Kubeconfig)
	} else {
		d.logf("build.sh builds what is missing (Kubernetes from source: ~15 min on 2 cores the first time, cached after), then it starts")
		c, err := sandbox.Start(ctx, sandbox.Options{Progress: d.out})
		if err != nil {
			return err
		}
		d.cluster = c
		d.deferUndo(func() error {
			d.logf("stopping the sandbox")
			return c.Stop()
		})
	}

	d.step("freezeframe: build cmd/freezeframe")
	d.bin = d.cfg.Bin
	if d.bin == "" {
		bin, err := harness.Build(ctx, d.work, d.out)
		if err != nil {
			return err
		}
		d.bin = bin
	}
	d.logf("binary: %s", d.bin)

	d.step("deploy the demo application: Redis with a PVC and a Secret, and its Blueprint")
	if err := harness.InstallBlueprintCRD(ctx, d.cluster); err != nil {
		return err
	}
	d.logf("kubectl apply -f deploy/crds/   (the Blueprint CRD)")
	d.pass = randomHex(12)
	// Objects in a namespace created a moment ago can be refused until the API server's
	// admission has seen it: create it first.
	if err := d.cluster.EnsureNamespace(ctx, d.ns); err != nil {
		return err
	}
	out, err := harness.Apply(ctx, d.cluster, AppManifests(d.ns, d.pass))
	if err != nil {
		return err
	}
	d.logf("%s", out)
	out, err = harness.Apply(ctx, d.cluster, BlueprintManifest(d.ns))
	if err != nil {
		return err
	}
	d.logf("%s", out)
	pod, err := d.waitPod(ctx)
	if err != nil {
		return err
	}
	srv, _, err := d.cluster.DatabaseFor(ctx, d.ns, Claim)
	if err != nil {
		return err
	}
	d.db = srv
	d.logf("pod %s/%s is Running; behind it a real redis-server on %s:%d (AOF, fsync always), data in %s",
		d.ns, pod, srv.Host, srv.Port, srv.DataDir)

	d.step("freezeframe up: scheduler, hooker, snapshotter and notifier, with an embedded NATS")
	up, err := harness.StartUp(ctx, harness.UpOptions{
		Bin:        d.bin,
		Kubeconfig: d.cluster.Kubeconfig,
		StateDir:   filepath.Join(d.work, "state"),
		LogPath:    filepath.Join(d.work, "freezeframe-up.log"),
		Cluster:    "demo",
	})
	if err != nil {
		return err
	}
	d.up = up
	d.deferUndo(up.Stop)
	d.logf("running (pid %d), NATS on %s, log in %s", up.Pid(), up.NATSURL(), up.LogPath())
	return nil
}

func (d *run) waitPod(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		pods, err := d.cluster.Client.CoreV1().Pods(d.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=redis"})
		if err == nil {
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
					return p.Name, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for the redis pod to run: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var backupIDLine = regexp.MustCompile(`^backup (\S+) requested`)

func (d *run) backup(ctx context.Context) (*Result, error) {
	res := &Result{}
	addr := d.db.Host + ":" + strconv.Itoa(d.db.Port)

	d.step("the writer: SET k:1 1, SET k:2 2, ... one at a time, each after the previous was acknowledged")
	w, err := consistency.StartRedisWriter(ctx, addr, d.pass, "k", 200*time.Microsecond)
	if err != nil {
		return nil, err
	}
	defer w.Stop(5 * time.Second)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = w.WaitAcked(wctx, 500)
	cancel()
	if err != nil {
		return nil, err
	}
	d.logf("writing to the pod's redis-server at %s: %d writes acknowledged so far", addr, w.Acked())
	d.logf("(the writer runs in this program, as the application's clients would: sandbox pods run no processes)")

	d.step("back it up")
	d.logf("$ NATS_URL=%s CLUSTER=%s freezeframe backup deployment/%s -n %s --wait", d.up.NATSURL(), d.up.Cluster(), Workload, d.ns)
	cmd := exec.CommandContext(ctx, d.bin, "backup", "deployment/"+Workload, "-n", d.ns, "--wait", "--timeout", "5m")
	cmd.Env = append(os.Environ(), d.up.Env()...)
	var cli bytes.Buffer
	shown := indent(d.out, "  ")
	cmd.Stdout = io.MultiWriter(&cli, shown)
	cmd.Stderr = shown
	cliErr := cmd.Run()
	res.CLIOutput = cli.String()
	if m := backupIDLine.FindStringSubmatch(strings.SplitN(res.CLIOutput, "\n", 2)[0]); m != nil {
		res.BackupID = m[1]
	}
	// A few more writes after the resume: they must not be in the snapshot either.
	time.Sleep(300 * time.Millisecond)
	writes, werr := w.Stop(5 * time.Second)
	if res.BackupID == "" {
		return res, fmt.Errorf("freezeframe backup: %v: no backup id in its output", cliErr)
	}
	if werr != nil {
		return res, fmt.Errorf("writer: %w", werr)
	}

	nc, client, err := d.up.Connect()
	if err != nil {
		return res, err
	}
	defer nc.Close()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	res.Events, err = client.List(lctx, events.Filter{BackupID: res.BackupID}, events.SubscribeOptions{FromStart: true})
	cancel()
	if err != nil {
		return res, err
	}
	q, okQ := harness.Payload[events.Quiesced](res.Events)
	r, okR := harness.Payload[events.Resumed](res.Events)
	s, okS := harness.Payload[events.Snapshotted](res.Events)
	if cliErr != nil || !okQ || !okR || !okS || !r.Succeeded {
		d.step("timeline: the backup's events")
		d.logf("%s", strings.TrimRight(harness.Timeline(res.Events), "\n"))
		d.logf("\nfreezeframe up's log, last lines:\n%s", d.up.LogTail(30))
		d.logf("\nVERDICT: NOT consistent: backup %s failed, there is no snapshot to trust", res.BackupID)
		return res, fmt.Errorf("backup %s did not succeed (%v): events %v", res.BackupID, cliErr, harness.Kinds(res.Events))
	}
	freeze := consistency.Freeze{From: q.QuiescedAt, Until: q.QuiescedAt.Add(r.FrozenFor.Std())}
	before := consistency.Check(writes, nil, freeze) // only for the writer's view of the pause

	d.step("timeline: the backup's events, and what the writer saw")
	d.printTimeline(res.Events, writes, freeze, before)

	d.step("the VolumeSnapshot, and where its content lies")
	if len(s.Snapshots) != 1 {
		return res, fmt.Errorf("want one snapshot of %s, got %d", Claim, len(s.Snapshots))
	}
	snap := s.Snapshots[0]
	out, err := d.cluster.Kubectl(ctx, "get", "volumesnapshot", "-n", d.ns, snap.Name)
	if err != nil {
		return res, err
	}
	d.logf("$ kubectl get volumesnapshot -n %s %s\n%s", d.ns, snap.Name, strings.TrimRight(string(out), "\n"))
	if res.Snapshot, res.SnapshotPath, err = d.snapshotContent(ctx, snap.Name); err != nil {
		return res, err
	}
	vs := res.Snapshot
	d.logf("creationTime %s (the cut), readyToUse %v, content %s, handle %s",
		vs.Status.CreationTime.Time.Local().Format("15:04:05.000"), deref(vs.Status.ReadyToUse),
		deref(vs.Status.BoundVolumeSnapshotContentName), d.snapshotHandle(ctx, deref(vs.Status.BoundVolumeSnapshotContentName)))
	d.logf("content: %s (a copy of the PVC's directory, made by the sandbox CSI driver)", res.SnapshotPath)
	d.listFiles(res.SnapshotPath)

	d.step("restore it: freezeframe restore makes a claim from the snapshot, in another namespace")
	target := d.ns + "-restored"
	if err := d.cluster.EnsureNamespace(ctx, target); err != nil {
		return res, err
	}
	d.logf("$ kubectl create namespace %s", target)
	d.logf("$ freezeframe restore %s --to-namespace %s --wait", res.BackupID, target)
	cmd = exec.CommandContext(ctx, d.bin, "restore", res.BackupID, "--to-namespace", target, "--wait", "--timeout", "5m", "--kubeconfig", d.cluster.Kubeconfig)
	cmd.Env = append(os.Environ(), d.up.Env()...)
	var rcli bytes.Buffer
	cmd.Stdout = io.MultiWriter(&rcli, shown)
	cmd.Stderr = shown
	if err := cmd.Run(); err != nil {
		d.logf("\nfreezeframe up's log, last lines:\n%s", d.up.LogTail(30))
		return res, fmt.Errorf("freezeframe restore: %w", err)
	}
	res.RestoreOutput = rcli.String()

	d.step("prove it: a fresh Redis on the restored claim, checked against what the writer had acknowledged")
	applied, err := harness.Apply(ctx, d.cluster, RestoredAppManifests(target, d.pass))
	if err != nil {
		return res, err
	}
	d.logf("%s", applied)
	fresh, vol, err := d.cluster.DatabaseFor(ctx, target, Claim)
	if err != nil {
		return res, err
	}
	d.logf("pod of deployment %s/%s runs on claim %s (volume %s); behind it a fresh redis-server on %s:%d, data in %s",
		target, Workload, Claim, vol.PV, fresh.Host, fresh.Port, fresh.DataDir)
	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	present, err := consistency.RedisNumberedKeys(kctx, fresh.Host+":"+strconv.Itoa(fresh.Port), d.pass, "k")
	cancel()
	if err != nil {
		return res, err
	}
	res.Verdict = consistency.Check(writes, present, freeze)
	d.logf("%s", strings.TrimRight(res.Verdict.Summary(), "\n"))
	if res.Verdict.Consistent {
		d.logf("\nVERDICT: consistent: the restored claim holds exactly k:1..k:%d, every write acknowledged before the pause; k:%d, held by the pause, and every later write are not in it",
			res.Verdict.MaxInSnapshot, res.Verdict.Held)
	} else {
		d.logf("\nVERDICT: NOT consistent: %s", strings.Join(res.Verdict.Problems, "; "))
	}
	return res, nil
}

// printTimeline merges the events with the writer's acknowledgements around the freeze.
func (d *run) printTimeline(evs []events.Event, writes []consistency.Write, f consistency.Freeze, v consistency.Verdict) {
	type line struct {
		at   time.Time
		text string
	}
	var lines []line
	for _, ev := range evs {
		lines = append(lines, line{ev.Time(), fmt.Sprintf("%-16s %s", ev.Kind(), harness.Describe(ev))})
	}
	if n := v.Held; n > 0 {
		if n > 1 {
			prev := writes[n-2]
			lines = append(lines, line{prev.Acked, fmt.Sprintf("%-16s k:%d acknowledged: the last write before the pause", "writer", n-1)})
		}
		w := writes[n-1]
		lines = append(lines, line{w.Issued, fmt.Sprintf("%-16s k:%d sent: the paused server holds it", "writer", n)})
		lines = append(lines, line{w.Acked, fmt.Sprintf("%-16s k:%d acknowledged after waiting %s", "writer", n, harness.Round(w.Acked.Sub(w.Issued)))})
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at.Before(lines[j].at) })
	first := lines[0].at
	for _, l := range lines {
		d.logf("%s  +%-10s %s", l.at.Local().Format("15:04:05.000"), harness.Round(l.at.Sub(first)), l.text)
	}
	d.logf("frozen for %s (hooker: end of the pre-hook to start of the post-hook)", harness.Round(f.Until.Sub(f.From)))
	if v.PausedFor > 0 {
		d.logf("writes paused for %s (writer: no acknowledgement between k:%d and k:%d)", harness.Round(v.PausedFor), v.Held-1, v.Held)
	}
}

// snapshotContent waits until the snapshot is bound to its content and returns it with
// the directory that holds the copy.
func (d *run) snapshotContent(ctx context.Context, name string) (*snapv1.VolumeSnapshot, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		vs, err := d.cluster.Snapshots.SnapshotV1().VolumeSnapshots(d.ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && vs.Status != nil && vs.Status.CreationTime != nil {
			if path, perr := d.cluster.SnapshotPath(ctx, d.ns, name); perr == nil {
				return vs, path, nil
			} else {
				err = perr
			}
		}
		select {
		case <-ctx.Done():
			return nil, "", fmt.Errorf("snapshot %s/%s content: %w (last: %v)", d.ns, name, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (d *run) snapshotHandle(ctx context.Context, content string) string {
	c, err := d.cluster.Snapshots.SnapshotV1().VolumeSnapshotContents().Get(ctx, content, metav1.GetOptions{})
	if err != nil || c.Status == nil || c.Status.SnapshotHandle == nil {
		return "?"
	}
	return *c.Status.SnapshotHandle
}

func (d *run) listFiles(root string) {
	_ = filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		d.logf("  %-48s %8d bytes", rel, info.Size())
		return nil
	})
}

func (d *run) keep(ctx context.Context) {
	d.step("left running: Ctrl-C tears it all down")
	d.logf("export KUBECONFIG=%s", d.cluster.Kubeconfig)
	d.logf("export NATS_URL=%s CLUSTER=%s", d.up.NATSURL(), d.up.Cluster())
	d.logf("%s events            # this backup's events, and any you start:", d.bin)
	d.logf("%s backup deployment/%s -n %s --wait", d.bin, Workload, d.ns)
	<-ctx.Done()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// indent prefixes every line written to w.
func indent(w io.Writer, prefix string) io.Writer {
	return &prefixWriter{w: w, prefix: prefix, start: true}
}

type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	start  bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out bytes.Buffer
	for _, c := range b {
		if p.start {
			out.WriteString(p.prefix)
		}
		out.WriteByte(c)
		p.start = c == '\n'
	}
	if _, err := p.w.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(b), nil
}
