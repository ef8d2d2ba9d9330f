package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/runtime"
	dynfake "k8s.io/client-go/dynamic/fake"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/pkg/workload"
	"github.com/freezeframe/freezeframe/services/hooker/blueprint/blueprinttest"
	"github.com/freezeframe/freezeframe/services/hooker/freeze"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
	"github.com/freezeframe/freezeframe/services/hooker/podexec/podexectest"
	"github.com/freezeframe/freezeframe/services/notifier/notify"
	"github.com/freezeframe/freezeframe/services/scheduler/schedule"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot/snapshottest"
	"github.com/freezeframe/freezeframe/test/sandbox/natsserver"
)

// A real nats-server process configured with the auth.conf that
// `freezeframe nats-auth` writes: every role's forbidden actions are
// refused with a permissions violation, `freezeframe setup` works as
// admin, and the four services, each under its own nkey, take a backup
// from request to resume, which a requester follows and an operator
// inspects.
func TestPermissionsOnARealNATSServer(t *testing.T) {
	ctx := t.Context()
	srv := startAuthServer(t)

	// Setup as admin, through the CLI; idempotent.
	for range 2 {
		var out, errOut bytes.Buffer
		if code := run(ctx, []string{"setup", "--nats", srv.url, "--nkey", srv.seed(events.RoleAdmin)}, &out, &errOut); code != 0 {
			t.Fatalf("freezeframe setup: exit %d: %s%s", code, out.String(), errOut.String())
		}
		for _, want := range []string{"stream FREEZEFRAME", "consumer hooker:", "consumer snapshotter-restore:", "consumer notifier:", "bucket " + events.FreezesBucket} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("freezeframe setup said %q, want a line with %q", out.String(), want)
			}
		}
	}

	t.Run("refused", func(t *testing.T) { testRefusals(t, srv) })
	t.Run("allowed", func(t *testing.T) { testSecureBackup(t, srv) })
}

// authServer is a nats-server process with the nats-auth configuration.
type authServer struct {
	url, dir string
}

func (s *authServer) seed(r events.Role) string { return filepath.Join(s.dir, string(r)+".nk") }

func startAuthServer(t *testing.T) *authServer {
	t.Helper()
	version, err := natsserver.VersionIn("../../pkg/events/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := natsserver.Ensure(t.Context(), version, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var out bytes.Buffer
	if code := run(t.Context(), []string{"nats-auth", "--out", dir}, &out, &out); code != 0 {
		t.Fatalf("freezeframe nats-auth: exit %d: %s", code, out.String())
	}
	checkSeeds(t, dir, out.String())

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("listen: \"127.0.0.1:%d\"\nserver_name: authz\njetstream { store_dir: %q }\ninclude \"auth.conf\"\n", port, filepath.Join(dir, "store"))
	if err := os.WriteFile(filepath.Join(dir, "server.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "nats-server.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", filepath.Join(dir, "server.conf"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		logf.Close()
	})
	s := &authServer{url: fmt.Sprintf("nats://127.0.0.1:%d", port), dir: dir}
	eventstest.Eventually(t, 20*time.Second, "nats-server accepting the admin", func() bool {
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "nats-server.log"))
			t.Fatalf("nats-server exited:\n%s", b)
		default:
		}
		nc, err := nats.Connect(s.url, nkeyOption(t, s.seed(events.RoleAdmin)), nats.Timeout(time.Second), nats.NoReconnect())
		if err != nil {
			return false
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return false
		}
		_, err = js.AccountInfo(t.Context())
		return err == nil
	})
	return s
}

// checkSeeds checks one private seed per role, mode 0600, and that a
// second run keeps them.
func checkSeeds(t *testing.T, dir, firstRun string) {
	t.Helper()
	before := map[events.Role][]byte{}
	for _, r := range events.Roles() {
		fi, err := os.Stat(filepath.Join(dir, string(r)+".nk"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s seed mode %v, want 0600", r, fi.Mode().Perm())
		}
		before[r], _ = os.ReadFile(filepath.Join(dir, string(r)+".nk"))
		if !strings.Contains(firstRun, string(r)+": created") {
			t.Errorf("first nats-auth run did not say it created %s's seed: %s", r, firstRun)
		}
	}
	var out bytes.Buffer
	if code := run(t.Context(), []string{"nats-auth", "--out", dir}, &out, &out); code != 0 {
		t.Fatalf("freezeframe nats-auth again: exit %d: %s", code, out.String())
	}
	for _, r := range events.Roles() {
		after, _ := os.ReadFile(filepath.Join(dir, string(r)+".nk"))
		if !bytes.Equal(before[r], after) || !strings.Contains(out.String(), string(r)+": kept") {
			t.Errorf("second nats-auth run replaced %s's seed: %s", r, out.String())
		}
	}
}

func nkeyOption(t *testing.T, seedFile string) nats.Option {
	t.Helper()
	o, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// violations records the permissions violations the server reports to
// one connection.
type violations struct {
	mu   sync.Mutex
	errs []error
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrPermissionViolation) {
		v.mu.Lock()
		v.errs = append(v.errs, err)
		v.mu.Unlock()
	}
}

// about returns the violation naming subject, if any.
func (v *violations) about(subject string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, err := range v.errs {
		if strings.Contains(err.Error(), `"`+subject+`"`) {
			return err
		}
	}
	return nil
}

// connectAs connects as role, replying on its inbox, recording violations.
func (s *authServer) connectAs(t *testing.T, r events.Role) (*nats.Conn, jetstream.JetStream, *violations) {
	t.Helper()
	v := &violations{}
	nc, err := nats.Connect(s.url, nkeyOption(t, s.seed(r)), nats.CustomInboxPrefix(events.InboxPrefix(r)), nats.ErrorHandler(v.handler))
	if err != nil {
		t.Fatalf("connect as %s: %v", r, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, v
}

func testRefusals(t *testing.T, srv *authServer) {
	ref := events.BackupRef{BackupID: "bk-forged", Workload: events.Workload{Cluster: "dev", Namespace: "shop", Kind: "Deployment", Name: "redis"}}
	publish := func(subject string) func(context.Context, *nats.Conn, jetstream.JetStream) {
		return func(_ context.Context, nc *nats.Conn, _ jetstream.JetStream) { _ = nc.Publish(subject, []byte("{}")) }
	}
	freezeKey, err := events.FreezeKey(ref.Workload)
	if err != nil {
		t.Fatal(err)
	}
	stream := events.DefaultStream
	cases := []struct {
		name    string
		role    events.Role
		subject string // the subject the server refuses
		act     func(context.Context, *nats.Conn, jetstream.JetStream)
	}{
		{"scheduler forges a resume", events.RoleScheduler, events.Subject(events.KindResumed, ref), nil},
		{"requester asks for an unlock", events.RoleRequester, events.Subject(events.KindUnlockRequested, ref), nil},
		{"requester asks for a restore", events.RoleRequester, events.Subject(events.KindRestoreRequested, ref), nil},
		{"notifier publishes a request", events.RoleNotifier, events.Subject(events.KindRequested, ref), nil},
		{"hooker forges a snapshot", events.RoleHooker, events.Subject(events.KindSnapshotted, ref), nil},
		{"snapshotter forges a quiesce", events.RoleSnapshotter, events.Subject(events.KindQuiesced, ref), nil},
		{"requester writes a freeze", events.RoleRequester, "$KV." + events.FreezesBucket + "." + freezeKey, nil},
		{"snapshotter writes a freeze", events.RoleSnapshotter, "$KV." + events.FreezesBucket + "." + freezeKey, nil},
		{"operator writes an end of freeze", events.RoleOperator, "$KV." + events.BackupsBucket + ".x", nil},
		{"scheduler deletes the stream", events.RoleScheduler, "$JS.API.STREAM.DELETE." + stream,
			func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) { _ = js.DeleteStream(ctx, stream) }},
		{"hooker updates the stream", events.RoleHooker, "$JS.API.STREAM.UPDATE." + stream,
			func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) {
				_, _ = js.UpdateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"freezeframe.backup.>"}, MaxAge: time.Second})
			}},
		{"hooker redirects the snapshotter's consumer", events.RoleHooker, "$JS.API.CONSUMER.CREATE." + stream + ".snapshotter",
			func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) {
				_, _ = js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "snapshotter", FilterSubjects: []string{"a.b", "c.d"}, AckPolicy: jetstream.AckExplicitPolicy})
			}},
		{"hooker pulls the snapshotter's events", events.RoleHooker, "$JS.API.CONSUMER.MSG.NEXT." + stream + ".snapshotter", nil},
		{"requester deletes the hooker's consumer", events.RoleRequester, "$JS.API.CONSUMER.DELETE." + stream + ".hooker",
			func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) {
				_ = js.DeleteConsumer(ctx, stream, "hooker")
			}},
		{"snapshotter deletes the lease bucket", events.RoleSnapshotter, "$JS.API.STREAM.DELETE.KV_" + events.FreezesBucket,
			func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) {
				_ = js.DeleteKeyValue(ctx, events.FreezesBucket)
			}},
		{"notifier answers backup requests", events.RoleNotifier, events.APISubject("dev"),
			func(_ context.Context, nc *nats.Conn, _ jetstream.JetStream) {
				_, _ = nc.QueueSubscribe(events.APISubject("dev"), "x", func(*nats.Msg) {})
			}},
		{"requester reads the operator's replies", events.RoleRequester, events.InboxPrefix(events.RoleOperator) + ".>",
			func(_ context.Context, nc *nats.Conn, _ jetstream.JetStream) {
				_, _ = nc.Subscribe(events.InboxPrefix(events.RoleOperator)+".>", func(*nats.Msg) {})
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nc, js, v := srv.connectAs(t, c.role)
			act := c.act
			if act == nil {
				act = publish(c.subject)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			act(ctx, nc, js)
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			eventstest.Eventually(t, 5*time.Second, "a permissions violation for "+c.subject, func() bool { return v.about(c.subject) != nil })
			t.Logf("%s: %v", c.role, v.about(c.subject))
		})
	}
	// Nothing refused happened: the stream and the consumers are as set up.
	_, js, _ := srv.connectAs(t, events.RoleAdmin)
	s, err := js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatalf("stream after the refusals: %v", err)
	}
	if age := s.CachedInfo().Config.MaxAge; age != 30*24*time.Hour {
		t.Errorf("stream max age %s after the refusals, want the set-up's 720h", age)
	}
	if n := s.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("%d events stored after forged publishes, want 0", n)
	}
	for _, d := range events.Durables() {
		c, err := js.Consumer(t.Context(), stream, d.Name)
		if err != nil {
			t.Errorf("consumer %s after the refusals: %v", d.Name, err)
			continue
		}
		if got := c.CachedInfo().Config.FilterSubjects; strings.Contains(strings.Join(got, " "), "a.b") {
			t.Errorf("consumer %s redirected to %v", d.Name, got)
		}
	}
}

// testSecureBackup runs the four services in-process, each on its own
// connection as its own role (service.OpenBus, as the binaries do), with
// the pipeline's stand-ins for exec and the CSI controller.
func testSecureBackup(t *testing.T, srv *authServer) {
	group := newServiceGroup(t)
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// The services' settings as `freezeframe setup` read them: the
	// environment's defaults, so that each binds its consumers untouched.
	var cfgs upConfigs
	if err := cfgs.each(func(_, prefix string, cfg any, _ *service.Common) error {
		_, err := service.Load(prefix, cfg, nil, io.Discard)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	common := func(c *service.Common, r events.Role) service.Common {
		c.Cluster, c.ShutdownTimeout = "dev", 5*time.Second
		c.NATS.URL, c.NATS.NKeyFile = srv.url, srv.seed(r)
		return *c
	}
	bus := func(r events.Role, c service.Common) *service.Bus {
		b, err := service.OpenBus(t.Context(), c, string(r), log)
		if err != nil {
			t.Fatalf("%s: open bus: %v", r, err)
		}
		t.Cleanup(b.Close)
		return b
	}
	runService := group.run
	kube := redisCluster(t)
	snaps := snapfake.NewSimpleClientset(snapshottest.Classes()...)
	snapshottest.NewController(t, snaps, snapshottest.ControllerOptions{ReadyAtCut: true})
	ex := &podexectest.Recorder{}
	notified := &recordingNotifier{}

	cfgs.scheduler.Common = common(&cfgs.scheduler.Common, events.RoleScheduler)
	cfgs.scheduler.Policies = false
	schedBus := bus(events.RoleScheduler, cfgs.scheduler.Common)
	sched := schedule.New(cfgs.scheduler, schedule.NewKubeWorkloads(kube), schedBus.Publisher, log)
	runService("scheduler", func(ctx context.Context) error { return sched.Run(ctx, schedBus.Conn) })

	cfgs.hooker.Common = common(&cfgs.hooker.Common, events.RoleHooker)
	cfgs.hooker.Replica = "hooker-0"
	hookBus := bus(events.RoleHooker, cfgs.hooker.Common)
	leases, err := lease.Open(t.Context(), hookBus.JetStream, lease.Config{})
	if err != nil {
		t.Fatal(err)
	}
	hooker := freeze.New(cfgs.hooker, freeze.Deps{
		Leases:     leases,
		Workloads:  workload.NewResolver(kube),
		Blueprints: freeze.NewKubeBlueprints(dynfake.NewSimpleDynamicClient(runtime.NewScheme(), blueprinttest.RedisPause()), false, "kanister"),
		Objects:    freeze.NewKubeObjects(kube),
		Pods:       freeze.NewKubeObjects(kube),
		Exec:       ex,
		Publisher:  hookBus.Publisher,
		Lookup:     events.NewStreamHistory(hookBus.JetStream, "").Lookup,
	}, log)
	runService("hooker", func(ctx context.Context) error { return hooker.Run(ctx, hookBus.JetStream) })

	cfgs.snapshotter.Common = common(&cfgs.snapshotter.Common, events.RoleSnapshotter)
	snapBus := bus(events.RoleSnapshotter, cfgs.snapshotter.Common)
	snapper := snapshot.New(cfgs.snapshotter, snapshot.Deps{Workloads: workload.NewResolver(kube), Snapshots: snaps, Kube: kube}, snapBus.Publisher, log)
	runService("snapshotter", func(ctx context.Context) error { return snapper.Run(ctx, snapBus.JetStream) })

	cfgs.notifier.Common = common(&cfgs.notifier.Common, events.RoleNotifier)
	notifyBus := bus(events.RoleNotifier, cfgs.notifier.Common)
	if _, err := notify.OpenLedger(t.Context(), notifyBus.JetStream, cfgs.notifier.SlackConfig.Bucket); err != nil {
		t.Errorf("notifier: %v", err)
	}
	notifier := notify.New(cfgs.notifier, notified, log)
	runService("notifier", func(ctx context.Context) error { return notifier.Run(ctx, notifyBus.JetStream) })

	// A requester asks through the CLI's connection and follows the backup.
	cf := connectFlags{natsURL: srv.url, stream: events.DefaultStream, nkey: srv.seed(events.RoleRequester), role: string(events.RoleRequester)}
	client, closeClient, err := cf.client(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeClient)
	var id string
	eventstest.Eventually(t, 20*time.Second, "the scheduler answering the requester", func() bool {
		rctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		id, err = client.RequestBackup(rctx, events.BackupRequested{BackupRef: events.BackupRef{Workload: events.Workload{Cluster: "dev", Namespace: "shop", Kind: "deployment", Name: "redis"}}})
		return err == nil
	})
	wctx, wcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer wcancel()
	var seen []events.Event
	if _, err := client.WaitReady(wctx, id, func(ev events.Event) { seen = append(seen, ev) }); err != nil {
		t.Fatalf("backup %s did not end: %v (events %v)\nlogs:\n%s", id, err, kindsOf(seen), logs.String())
	}
	want := map[events.Kind]bool{events.KindRequested: true, events.KindQuiesced: true, events.KindSnapshotted: true, events.KindResumed: true, events.KindSnapshotReady: true}
	for _, ev := range seen {
		delete(want, ev.Kind())
	}
	if len(want) != 0 || !events.Succeeded(seen[len(seen)-1]) {
		t.Fatalf("events %v: missing %v\nlogs:\n%s", kindsOf(seen), want, logs.String())
	}
	if r := findKind(seen, events.KindResumed); r == nil || !r.Payload.(*events.Resumed).Succeeded {
		t.Errorf("resumed %+v", r)
	}
	if cmds := ex.Commands(); len(cmds) != 2 || !strings.Contains(cmds[0], "CLIENT PAUSE") || !strings.Contains(cmds[1], "CLIENT UNPAUSE") {
		t.Errorf("hooks ran %q, want the pause then the unpause", cmds)
	}
	t.Logf("backup %s under per-role identities: %v", id, kindsOf(seen))
	waitNotified(t, notified, 1)

	// An operator reads what is frozen (the freezes and backups buckets).
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"status", "--nats", srv.url, "--nkey", srv.seed(events.RoleOperator), "-n", "shop", "--cluster", "dev"}, &out, &errOut); code != 0 {
		t.Errorf("freezeframe status as operator: exit %d: %s%s", code, out.String(), errOut.String())
	}
	if strings.Contains(logs.String(), "permissions violation") || strings.Contains(errOut.String(), "permissions violation") {
		t.Errorf("a service or the CLI was refused something it needs:\n%s%s", logs.String(), errOut.String())
	}
}

func findKind(evs []events.Event, k events.Kind) *events.Event {
	for i := range evs {
		if evs[i].Kind() == k {
			return &evs[i]
		}
	}
	return nil
}

// lockedBuffer is a log destination read while services write to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
