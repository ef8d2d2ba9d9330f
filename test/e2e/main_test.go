package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/test/e2e/consistency"
	"github.com/freezeframe/freezeframe/test/e2e/demo"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// One sandbox for the package. Every test has its own namespace and its own
// `freezeframe up` (own NATS, own log), so tests run in parallel (-parallel, default
// GOMAXPROCS) without seeing each other's backups.
func TestMain(m *testing.M) { sandbox.Main(m, sandbox.Options{}) }

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	crdOnce   sync.Once
	crdErr    error
	natsOnce  sync.Once
	natsBin   string
	natsErr   error
)

// freezeframeBin builds cmd/freezeframe once per test binary, into the sandbox's state
// directory (removed with the sandbox). FREEZEFRAME_E2E_BIN names a binary to use
// instead (e.g. one built from another checkout).
func freezeframeBin(t testing.TB) string {
	t.Helper()
	c := sandbox.Shared(t)
	buildOnce.Do(func() {
		if bin := os.Getenv("FREEZEFRAME_E2E_BIN"); bin != "" {
			builtBin = bin
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		builtBin, buildErr = harness.Build(ctx, filepath.Join(c.StateDir, "e2e-bin"), os.Stderr)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// natsServerBin builds the standalone nats-server once (cached across runs, the version
// pkg/events is built against).
func natsServerBin(t testing.TB) string {
	t.Helper()
	natsOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		version, err := harness.NATSServerVersion()
		if err != nil {
			natsErr = err
			return
		}
		natsBin, natsErr = harness.EnsureNATSServer(ctx, version, os.Stderr)
	})
	if natsErr != nil {
		t.Fatal(natsErr)
	}
	return natsBin
}

// startBus starts this test's NATS as production runs it: a nats-server with one nkey
// user per role and its permissions (`freezeframe nats-auth`), the stream, consumers
// and buckets made by `freezeframe setup` as admin. It is stopped when the test ends; if
// the test failed, the end of its log is shown.
func startBus(t testing.TB, dir string, env ...string) *harness.Bus {
	t.Helper()
	bus, err := harness.StartBus(t.Context(), harness.BusOptions{
		Bin:    freezeframeBin(t),
		Server: natsServerBin(t),
		Dir:    dir,
		Env:    env,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Every service did its work within its identity's permissions, and so did the
		// test as operator: NATS refused nobody.
		for _, v := range bus.Violations() {
			t.Errorf("NATS refused a client: %s", v)
		}
		bus.Stop()
		if t.Failed() || os.Getenv("FREEZEFRAME_E2E_LOGS") != "" {
			t.Logf("nats-server log (%s), last lines:\n%s", bus.Log(), bus.LogTail(40))
		}
	})
	return bus
}

func installCRD(t testing.TB) {
	t.Helper()
	c := sandbox.Shared(t)
	crdOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		crdErr = harness.InstallBlueprintCRD(ctx, c)
	})
	if crdErr != nil {
		t.Fatal(crdErr)
	}
}

// startUp runs `freezeframe up` against the sandbox for this test, with env added, its
// services each connecting as its own NATS identity to the test's own nats-server
// (startBus). It is stopped when the test ends; if the test failed, the end of its log is
// shown.
func startUp(t testing.TB, env ...string) *harness.Up {
	t.Helper()
	c := sandbox.Shared(t)
	bin := freezeframeBin(t)
	installCRD(t)
	dir := t.TempDir()
	var slackToken string
	// A benchmark runs without Slack, as benchUp does (slacktest serves tests only).
	if tt, ok := t.(*testing.T); ok && !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "NOTIFIER_SLACK_") }) {
		var slack []string
		slack, slackToken = slackEnv(tt)
		env = append(slack, env...)
	}
	// Setup sees the services' settings too, so that it makes their consumers to match.
	bus := startBus(t, filepath.Join(dir, "nats"), env...)
	up, err := harness.StartUp(t.Context(), harness.UpOptions{
		Bin:        bin,
		Kubeconfig: c.Kubeconfig,
		StateDir:   filepath.Join(dir, "state"),
		LogPath:    filepath.Join(dir, "freezeframe-up.log"),
		Bus:        bus,
		Env:        env,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		start := time.Now()
		if err := up.Stop(); err != nil {
			t.Errorf("stop freezeframe up: %v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Logf("freezeframe up took %s to stop", d.Round(time.Millisecond))
		}
		checkNoSecretLeaked(t, up, bus, slackToken)
		if t.Failed() || os.Getenv("FREEZEFRAME_E2E_LOGS") != "" {
			t.Logf("freezeframe up log (%s), last lines:\n%s", up.LogPath(), up.LogTail(120))
		}
	})
	return up
}

// startUpHoldingSnapshots starts an API proxy that holds the snapshotter's VolumeSnapshot
// creations (the cut does not happen until proxy.Release), and `freezeframe up` whose
// snapshotter goes through it. At the end the proxy fails what it still holds before up
// is stopped, so the snapshotter is not stuck in a call at shutdown.
func startUpHoldingSnapshots(t testing.TB, env ...string) (*harness.Up, *harness.APIProxy) {
	t.Helper()
	proxy, err := harness.StartAPIProxy(sandbox.Shared(t).Config, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	proxy.Hold(harness.IsSnapshotCreate)
	up := startUp(t, append(env, "SNAPSHOTTER_KUBECONFIG="+proxy.Kubeconfig)...)
	t.Cleanup(func() { _ = proxy.Close() })
	return up, proxy
}

// waitHeld waits until the proxy holds a VolumeSnapshot creation: the snapshotter is at
// the cut.
func waitHeld(t testing.TB, proxy *harness.APIProxy) {
	t.Helper()
	waitFor(t, 10*time.Second, "the snapshotter's VolumeSnapshot create held", func() (bool, error) {
		now, _ := proxy.Held()
		return now > 0, nil
	})
}

// connect returns an events client on up's NATS, closed when the test ends.
func connect(t testing.TB, up *harness.Up) *events.Client {
	t.Helper()
	nc, client, err := up.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return client
}

// requestBackup asks the scheduler for a backup of a Deployment or StatefulSet, with the
// snapshot class named (or the default when empty).
func requestBackup(t testing.TB, up *harness.Up, client *events.Client, ns, kind, name string, class ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req := events.BackupRequested{
		BackupRef:   events.BackupRef{Workload: events.Workload{Cluster: up.Cluster(), Namespace: ns, Kind: kind, Name: name}},
		RequestedBy: "e2e/" + t.Name(),
	}
	if len(class) > 0 {
		req.SnapshotClass = class[0]
	}
	id, err := client.RequestBackup(ctx, req)
	if err != nil {
		t.Fatalf("request backup of %s %s/%s: %v", kind, ns, name, err)
	}
	return id
}

// follow collects a backup's events as they come, so a test can wait for one kind while
// the backup goes on.
type follow struct {
	mu   sync.Mutex
	evs  []events.Event
	more chan struct{}
	done chan struct{}
	err  error
}

// followBackup follows a backup until the application is resumed (or nothing was frozen).
func followBackup(t testing.TB, client *events.Client, id string) *follow {
	t.Helper()
	return followUntil(t, client.Wait, id)
}

// followBackupReady follows a backup until it is complete: resumed and its snapshots ready
// (or failed).
func followBackupReady(t *testing.T, client *events.Client, id string) *follow {
	t.Helper()
	return followUntil(t, client.WaitReady, id)
}

func followUntil(t testing.TB, wait func(context.Context, string, func(events.Event)) (events.Event, error), id string) *follow {
	t.Helper()
	f := &follow{more: make(chan struct{}, 1), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(f.done)
		_, err := wait(ctx, id, func(ev events.Event) {
			f.mu.Lock()
			f.evs = append(f.evs, ev)
			f.mu.Unlock()
			select {
			case f.more <- struct{}{}:
			default:
			}
		})
		f.mu.Lock()
		f.err = err
		f.mu.Unlock()
	}()
	t.Cleanup(func() { cancel(); <-f.done })
	return f
}

func (f *follow) events() []events.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.evs)
}

// waitKind waits for the first event of kind k.
func (f *follow) waitKind(t testing.TB, k events.Kind, timeout time.Duration) events.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		for _, ev := range f.events() {
			if ev.Kind() == k {
				return ev
			}
		}
		select {
		case <-f.more:
		case <-f.done:
			for _, ev := range f.events() {
				if ev.Kind() == k {
					return ev
				}
			}
			t.Fatalf("backup ended without %s:\n%s", k, harness.Timeline(f.events()))
		case <-deadline:
			t.Fatalf("no %s within %s; so far:\n%s", k, timeout, harness.Timeline(f.events()))
		}
	}
}

// wait waits for the backup's terminal event and returns every event.
func (f *follow) wait(t testing.TB, timeout time.Duration) []events.Event {
	t.Helper()
	select {
	case <-f.done:
	case <-time.After(timeout):
		t.Fatalf("backup not finished within %s; so far:\n%s", timeout, harness.Timeline(f.events()))
	}
	if f.err != nil {
		t.Fatalf("follow backup: %v", f.err)
	}
	return f.events()
}

// requireKinds checks the kinds of evs, in order. SnapshotReady follows the cut
// independently of the resume (before it, with fast storage), so it is left out of the
// comparison unless want names it.
func requireKinds(t *testing.T, evs []events.Event, want ...events.Kind) {
	t.Helper()
	got := harness.Kinds(evs)
	if !slices.Contains(want, events.KindSnapshotReady) {
		got = slices.DeleteFunc(got, func(k events.Kind) bool { return k == events.KindSnapshotReady })
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v:\n%s", got, want, harness.Timeline(evs))
	}
}

// waitFor polls cond every 100ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last error: %v)", what, timeout, last)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func addr(s *sandbox.Server) string { return s.Host + ":" + strconv.Itoa(s.Port) }

// redisWrite does one SET on its own connection, within timeout: the database is
// writable.
func redisWrite(ctx context.Context, s *sandbox.Server, key string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := consistency.DialRedis(ctx, addr(s), s.Password)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	reply, err := conn.Do("SET", key, time.Now().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("SET %s: %w", key, err)
	}
	if reply != "OK" {
		return fmt.Errorf("SET %s: %v", key, reply)
	}
	return nil
}

// mariadb runs a SQL script with the mariadb client on the host, against s.
func mariadb(ctx context.Context, s *sandbox.Server, sql string) (string, error) {
	return runSQLClient(ctx, s, sql, "mariadb", "-N", "-B", "-e")
}

// runSQLClient runs a database's command-line client on the host with s's
// connection environment, the script last; rows come back one a line.
func runSQLClient(ctx context.Context, s *sandbox.Server, sql, client string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, client, append(args, sql)...)
	cmd.Env = os.Environ()
	for k, v := range s.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %q: %w: %s", client, sql, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// restoreWithCLI runs `freezeframe restore id --to-namespace target --wait`
// against up, and checks it reports pvc bound in target.
func restoreWithCLI(t *testing.T, c *sandbox.Cluster, up *harness.Up, id, target, pvc string) {
	t.Helper()
	if err := c.EnsureNamespace(t.Context(), target); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), freezeframeBin(t), "restore", id, "--to-namespace", target, "--wait", "--timeout", "3m", "--kubeconfig", c.Kubeconfig)
	cmd.Env = append(os.Environ(), up.Env()...)
	out, err := cmd.CombinedOutput()
	t.Logf("$ freezeframe restore %s --to-namespace %s --wait\n%s", id, target, out)
	if err != nil {
		t.Fatalf("freezeframe restore: %v", err)
	}
	if !strings.Contains(string(out), target+"/"+pvc+" bound to ") {
		t.Fatalf("restore output does not report %s/%s bound", target, pvc)
	}
}

// copyDir copies a snapshot's directory, so that a server started on it leaves the
// snapshot as it was.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.CommandContext(t.Context(), "cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v: %s", src, err, out)
	}
	return dst
}

// demoRedisRig is the demo's Redis under a writer, with freezeframe up.
type demoRedisRig struct {
	pass   string
	vol    *sandbox.Volume
	up     *harness.Up
	client *events.Client
	w      *consistency.Writer
}

// startDemoRedisUnderWriter deploys the demo's Redis and Blueprint in ns,
// starts freezeframe, and a writer writing numbered keys (k:1, k:2, ...),
// returning once 300 are acknowledged. The caller stops the writer.
func startDemoRedisUnderWriter(t testing.TB, c *sandbox.Cluster, ns string) demoRedisRig {
	t.Helper()
	return startDemoRedisUnderWriterWith(t, c, ns, func(t testing.TB) *harness.Up { return startUp(t) })
}

// startDemoRedisUnderWriterWith is startDemoRedisUnderWriter with freezeframe started by
// startUp.
func startDemoRedisUnderWriterWith(t testing.TB, c *sandbox.Cluster, ns string, startUp func(testing.TB) *harness.Up) demoRedisRig {
	t.Helper()
	pass := randomHex(8)
	if err := c.EnsureNamespace(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.Apply(t.Context(), c, demo.AppManifests(ns, pass)); err != nil {
		t.Fatal(err)
	}
	applyBlueprint(t, ns, demo.BlueprintManifest(ns))
	pod := waitPodRunning(t, ns, "app=redis")
	srv, vol, err := c.DatabaseFor(t.Context(), ns, demo.Claim)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitExec(t.Context(), ns, pod, demo.Container); err != nil {
		t.Fatal(err)
	}
	up := startUp(t)
	client := connect(t, up)
	w, err := consistency.StartRedisWriter(t.Context(), addr(srv), pass, "k", 200*time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	// On a machine busy building (CI runs the packages side by side),
	// fsynced writes can take a hundred milliseconds each.
	if err := w.WaitAcked(ctxTimeout(t, 2*time.Minute), 300); err != nil {
		w.Stop(5 * time.Second)
		t.Fatal(err)
	}
	return demoRedisRig{pass: pass, vol: vol, up: up, client: client, w: w}
}
