package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/services/notifier/slack/slacktest"
	"github.com/freezeframe/freezeframe/test/e2e/consistency"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// Config configures Run.
type Config struct {
	Cluster *sandbox.Cluster
	// BinDir holds the scheduler, hooker, snapshotter and notifier binaries, and
	// the freezeframe CLI, which sets up the bus.
	BinDir string
	// NATSServer is the nats-server binary (harness.EnsureNATSServer).
	NATSServer string
	// WorkDir holds one directory per row: NATS store, service logs.
	WorkDir string
	// Slack is the local Slack the notifier posts to.
	Slack *slacktest.Server
	// MaxFreeze is HOOKER_MAX_FREEZE, the cap; 5s when zero.
	MaxFreeze time.Duration
	// Namespace of the Redis workload; "chaos" when empty.
	Namespace string
	Log       *slog.Logger
}

// The services' timing, low so that a crash is recovered from within seconds.
const (
	ackWait         = 2 * time.Second
	leaseStaleAfter = 1500 * time.Millisecond
	snapshotStall   = 3 * time.Second
	// apiGrace is how soon after the API server answers again a freeze it
	// kept on (no post-hook could run) must end: the watchdog's retry, an
	// exec and the hook's own sleep.
	apiGrace = 2 * time.Second
	// notifierAckWait is the notifier's (fixed) redelivery delay: a message
	// lost or doubled by a crash shows only after it.
	notifierAckWait = 10 * time.Second
)

// Result is what one row found.
type Result struct {
	Row      Row
	BackupID string
	// FrozenFor is the longest gap between two acknowledged writes, as the
	// writer saw it (a write pending at the end counts until then).
	FrozenFor time.Duration
	// Hooks counts the hook runs from the marker files.
	Hooks string
	// Violations are the invariants the row broke; NA those it could not
	// check (a service it needs stayed down).
	Violations []string
	NA         []string
	// Err says the row could not run; it counts as a failure.
	Err error
	Dir string
}

// OK reports whether the row ran and broke no invariant.
func (r Result) OK() bool { return r.Err == nil && len(r.Violations) == 0 }

// Run deploys the Redis workload and runs each row in turn; each gets its own
// NATS and services. onResult, when not nil, sees each result as it comes.
func Run(ctx context.Context, cfg Config, rows []Row, onResult func(Result)) ([]Result, error) {
	if cfg.MaxFreeze == 0 {
		cfg.MaxFreeze = 5 * time.Second
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "chaos"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	markers := filepath.Join(cfg.WorkDir, "markers")
	if err := os.MkdirAll(markers, 0o755); err != nil {
		return nil, fmt.Errorf("run chaos: %w", err)
	}
	app, err := deployApp(ctx, cfg.Cluster, cfg.Namespace, markers)
	if err != nil {
		return nil, err
	}
	// One identity per role, as in production: each service connects with its
	// own seed and may do only its part; the test itself is admin.
	ids, err := harness.WriteIdentities(ctx, filepath.Join(cfg.BinDir, "freezeframe"), filepath.Join(cfg.WorkDir, "identities"))
	if err != nil {
		return nil, fmt.Errorf("run chaos: %w", err)
	}
	e := &env{cfg: cfg, app: app, markers: markers, webhook: cfg.Slack.Webhook("chaos", nuid.Next()), ids: ids}
	var out []Result
	for i, row := range rows {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		start := time.Now()
		cfg.Log.InfoContext(ctx, "row start", "row", i, "what", row.String())
		res := e.runRow(ctx, i, row)
		cfg.Log.InfoContext(ctx, "row done", "row", i, "what", row.String(), "took", time.Since(start).Round(100*time.Millisecond),
			"ok", res.OK(), "violations", res.Violations, "err", res.Err)
		out = append(out, res)
		if onResult != nil {
			onResult(res)
		}
	}
	return out, nil
}

type env struct {
	cfg     Config
	app     *sandbox.Database
	markers string
	webhook string
	ids     harness.Identities
}

// bound is the writer-observed freeze the cap allows: MaxFreeze from
// Quiesced, plus the hooks' own sleeps (the pre-hook's after the pause, the
// post-hook's before the unpause) and a second and a half for execs and the
// watchdog's tick.
func (e *env) bound() time.Duration { return e.cfg.MaxFreeze + 2*HookSleep + 1500*time.Millisecond }

// rowRun is the state of one row.
type rowRun struct {
	e    *env
	row  Row
	dir  string
	nats *NATSServer
	// cluster replaces nats in NATS rows.
	cluster *NATSCluster
	proxy   *harness.APIProxy
	svcs    []*Service
	nc      *nats.Conn
	js      jetstream.JetStream
	client  *events.Client
	obs     *Observer
	writer  *consistency.Writer
	id      string
	reqErr  chan error

	kills       []kill
	down        map[string]bool // services killed and not restarted
	unpausedAt  time.Time       // when the harness undid a pause nobody else could
	apiBackAt   time.Time       // when a restarted API server answered again
	violations  []string
	na          []string
	lastFault   time.Time
	baseline    baseline
	republished bool
}

type kill struct {
	service string
	at      time.Time
}

type baseline struct {
	pre       int
	snapshots int
	held      int
	at        time.Time
}

func (r *rowRun) violate(format string, args ...any) {
	r.violations = append(r.violations, fmt.Sprintf(format, args...))
}

func (e *env) runRow(ctx context.Context, i int, row Row) Result {
	r := &rowRun{e: e, row: row, dir: filepath.Join(e.cfg.WorkDir, fmt.Sprintf("row%02d", i)), down: map[string]bool{}, id: events.NewBackupID()}
	res := Result{Row: row, Dir: r.dir, BackupID: r.id}
	defer r.tearDown(ctx)
	if err := r.setUp(ctx); err != nil {
		res.Err = err
		return res
	}
	var err error
	switch row.kind {
	case kindKill:
		err = r.runKill(ctx)
	case kindRedeliver:
		err = r.runRedeliver(ctx)
	case kindStopHolder:
		err = r.runStopHolder(ctx)
	case kindHoldCut:
		err = r.runHoldCut(ctx)
	case kindNATS:
		err = r.runKillNATS(ctx)
	case kindRestartAPI:
		err = r.runRestartAPI(ctx)
	case kindCutExec:
		err = r.runCutExec(ctx)
	}
	if err != nil {
		res.Err = err
		return res
	}
	res.FrozenFor, res.Hooks, err = r.check(ctx)
	// Every service did its part within its identity's permissions.
	for _, s := range r.natsNodes() {
		for _, v := range s.Violations() {
			r.violate("NATS refused a client: %s", v)
		}
	}
	res.Violations, res.NA, res.Err = r.violations, r.na, err
	return res
}

// natsNodes are the row's nats-server processes.
func (r *rowRun) natsNodes() []*NATSServer {
	if r.cluster != nil {
		return r.cluster.Nodes
	}
	if r.nats != nil {
		return []*NATSServer{r.nats}
	}
	return nil
}

func (r *rowRun) setUp(ctx context.Context) error {
	for _, d := range []string{r.dir, r.e.markers} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("set up row: %w", err)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("set up row: %w", err)
		}
	}
	if err := unpause(ctx, r.e.app.Server); err != nil {
		return err
	}
	var err error
	if r.row.kind == kindNATS {
		if r.cluster, err = StartNATSCluster(ctx, r.e.cfg.NATSServer, r.dir, 3, r.e.ids); err != nil {
			return err
		}
	} else if r.nats, err = StartNATSServer(ctx, r.e.cfg.NATSServer, r.dir, "nats", r.e.ids); err != nil {
		return err
	}
	if r.proxy, err = harness.StartAPIProxy(r.e.cfg.Cluster.Config, r.dir); err != nil {
		return err
	}
	// After the proxy: setup reads the services' settings, the proxy's among them.
	if err := r.setUpBus(ctx); err != nil {
		return err
	}
	hookers := []string{"hooker"}
	if r.row.kind == kindStopHolder {
		hookers = []string{"hooker-a", "hooker-b"}
	}
	type spec struct{ kind, name string }
	specs := []spec{{Scheduler, Scheduler}}
	for _, h := range hookers {
		specs = append(specs, spec{Hooker, h})
	}
	specs = append(specs, spec{Snapshotter, Snapshotter}, spec{Notifier, Notifier})
	// Started together: each waits for its own readiness, on the bus
	// set up above.
	var wg sync.WaitGroup
	r.svcs = make([]*Service, len(specs))
	errs := make([]error, len(specs))
	for i, s := range specs {
		wg.Go(func() {
			r.svcs[i], errs[i] = StartService(ctx, ServiceOptions{Kind: s.kind, Name: s.name, BinDir: r.e.cfg.BinDir, LogDir: r.dir, Env: r.serviceEnv(s.kind, s.name)})
		})
	}
	wg.Wait()
	r.svcs = slices.DeleteFunc(r.svcs, func(s *Service) bool { return s == nil })
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if r.nc, err = connectAll(r.natsURL(), r.e.ids); err != nil {
		return err
	}
	if r.js, err = jetstream.New(r.nc); err != nil {
		return fmt.Errorf("connect jetstream: %w", err)
	}
	if r.client, err = events.NewClient(r.nc); err != nil {
		return err
	}
	if r.obs, err = Observe(r.nc); err != nil {
		return err
	}
	if r.writer, err = consistency.StartRedisWriter(ctx, redisAddr(r.e.app.Server), r.e.app.Password, "chaos:"+r.id, time.Millisecond); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return r.writer.WaitAcked(wctx, 50)
}

// setUpBus runs `freezeframe setup`: the stream, the shared durables and the
// buckets, with the services' settings (ack waits, replicas) so that the
// consumers match them. The services create none of them.
func (r *rowRun) setUpBus(ctx context.Context) error {
	env := baseEnv()
	for _, kind := range ServiceNames {
		for _, kv := range r.serviceEnv(kind, kind) {
			env = append(env, strings.ToUpper(kind)+"_"+kv)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(r.e.cfg.BinDir, "freezeframe"), "setup")
	cmd.Env = append(env, "NATS_URL="+r.natsURL(), "NATS_NKEY="+r.e.ids.Seed(events.RoleAdmin))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("freezeframe setup: %w\n%s", err, out)
	}
	return nil
}

func (r *rowRun) serviceEnv(kind, name string) []string {
	env := []string{"NATS_URL=" + r.natsURL(), "NATS_NKEY=" + r.e.ids.Seed(events.Role(kind)), "CLUSTER=chaos", "KUBECONFIG=" + r.e.cfg.Cluster.Kubeconfig}
	if r.cluster != nil {
		env = append(env, "STREAM_REPLICAS=3")
	}
	switch kind {
	case Scheduler:
		env = append(env, "POLICIES=false")
	case Hooker:
		env = append(env, "MAX_FREEZE="+r.e.cfg.MaxFreeze.String(), "ACK_WAIT="+ackWait.String(),
			"LEASE_RENEW_EVERY=250ms", "LEASE_STALE_AFTER="+leaseStaleAfter.String(),
			"SNAPSHOT_STALL_AFTER="+snapshotStall.String(), "WATCHDOG_TICK=100ms",
			"POD_NAME="+name, "HOOK_TIMEOUT=20s",
			// Each row's blueprint lives in its application's namespace.
			"NAMESPACED_BLUEPRINTS=true")
		if r.row.kind == kindCutExec {
			// Its exec streams go through the proxy, which cuts them.
			env = append(env, "KUBECONFIG="+r.proxy.Kubeconfig)
		}
	case Snapshotter:
		// The snapshotter goes through the proxy, which can hold its cut.
		env = append(env, "KUBECONFIG="+r.proxy.Kubeconfig, "ACK_WAIT="+ackWait.String(),
			"PROGRESS_EVERY=250ms", "REPLICA="+name, "RETRY_MAX_DELAY=500ms")
	case Notifier:
		env = append(env, "SLACK_WEBHOOK_URL="+r.e.webhook)
	}
	return env
}

func (r *rowRun) tearDown(ctx context.Context) {
	if r.writer != nil {
		_, _ = r.writer.Stop(time.Second)
	}
	if r.obs != nil {
		r.obs.Close()
	}
	if r.nc != nil {
		r.nc.Close()
	}
	if r.proxy != nil {
		_ = r.proxy.Close()
	}
	var wg sync.WaitGroup
	for _, s := range r.svcs {
		wg.Go(func() { _ = s.Stop(ctx, 5*time.Second) })
	}
	wg.Wait()
	if r.nats != nil {
		_ = r.nats.Stop(ctx, 5*time.Second)
	}
	if r.cluster != nil {
		r.cluster.Stop(ctx)
	}
	// A hooker killed while frozen leaves the pause behind.
	_ = unpause(ctx, r.e.app.Server)
}

func (r *rowRun) natsURL() string {
	if r.cluster != nil {
		return r.cluster.URL()
	}
	return r.nats.URL()
}

func (r *rowRun) service(name string) *Service {
	for _, s := range r.svcs {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// request asks the scheduler for the backup without waiting for its reply: a
// scheduler killed at the request leaves the client retrying.
func (r *rowRun) request(ctx context.Context) {
	r.reqErr = make(chan error, 1)
	req := events.BackupRequested{
		BackupRef: events.BackupRef{BackupID: r.id, Workload: events.Workload{
			Cluster: "chaos", Namespace: r.e.app.Namespace, Kind: events.KindDeployment, Name: r.e.app.Workload}},
		RequestedBy: "chaos",
	}
	go func() {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := r.client.RequestBackup(rctx, req)
		r.reqErr <- err
	}()
}

// requestTo requests the row's backup and waits until it reaches step; a
// step never reached is a violation, and false.
func (r *rowRun) requestTo(ctx context.Context, step Step) bool {
	r.request(ctx)
	if err := r.waitStep(ctx, step); err != nil {
		r.violate("step %q never reached (%v)", step, err)
		return false
	}
	return true
}

// waitStep waits until the backup reaches step.
func (r *rowRun) waitStep(ctx context.Context, step Step) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var err error
	switch step {
	case StepRequested:
		_, err = r.obs.WaitKind(ctx, r.id, events.KindRequested)
	case StepPreHook:
		_, err = WaitMarker(ctx, r.e.markers, PreHook)
	case StepQuiesced:
		_, err = r.obs.WaitKind(ctx, r.id, events.KindQuiesced)
	case StepCut:
		err = poll(ctx, time.Hour, 10*time.Millisecond, "the snapshot create held", func() (bool, error) {
			now, _ := r.proxy.Held()
			return now > 0, nil
		})
	case StepSnapshotted:
		_, err = r.obs.WaitKind(ctx, r.id, events.KindSnapshotted)
	case StepPostHook:
		_, err = WaitMarker(ctx, r.e.markers, PostHook)
	case StepResumed:
		_, err = r.obs.WaitKind(ctx, r.id, events.KindResumed)
	default:
		err = fmt.Errorf("unknown step %q", step)
	}
	return err
}

func (r *rowRun) runKill(ctx context.Context) error {
	svc := r.service(r.row.Service)
	if svc == nil {
		return fmt.Errorf("no service %s", r.row.Service)
	}
	if r.row.Step == StepCut {
		r.proxy.Hold(harness.IsSnapshotCreate)
	}
	if r.requestTo(ctx, r.row.Step) {
		if err := svc.Kill(ctx); err != nil {
			return err
		}
		r.kills = append(r.kills, kill{svc.Name, time.Now()})
		r.lastFault = time.Now()
	}
	if r.row.Step == StepCut {
		r.proxy.Release()
	}
	if r.row.Restart {
		if err := svc.Restart(ctx); err != nil {
			return err
		}
	} else if len(r.kills) > 0 {
		r.down[svc.Kind] = true
	}
	return r.waitEnd(ctx)
}

// waitEnd waits for the backup to end: complete (events.Completion), or its
// freeze ended (events.IsTerminal) when no snapshotter is left to make it
// ready. With no hooker left nothing can end it: then it waits out the cap,
// and undoes the pause itself.
func (r *rowRun) waitEnd(ctx context.Context) error {
	if r.down[Hooker] {
		wait := r.e.bound() + 2*time.Second
		err := poll(ctx, wait, 100*time.Millisecond, "terminal event", func() (bool, error) {
			_, done := r.ended()
			return done, nil
		})
		if err != nil {
			r.unpausedAt = time.Now()
			if err := unpause(ctx, r.e.app.Server); err != nil {
				return err
			}
		}
		return nil
	}
	err := poll(ctx, 60*time.Second, 50*time.Millisecond, "backup end", func() (bool, error) {
		terminal, complete := r.ended()
		return complete || (terminal && r.down[Snapshotter]), nil
	})
	if err != nil {
		r.violate("backup not ended within 60s: %v", r.kindsSeen())
	}
	return nil
}

// ended reports whether the backup's freeze ended, and whether it is complete,
// from the events seen so far; on a NATS cluster, whose nodes go away, from
// the stream (the raw subscription misses what is published while it
// reconnects).
func (r *rowRun) ended() (terminal, complete bool) {
	var evs []events.Event
	if r.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		if evs, err = r.storedEvents(ctx); err != nil {
			return false, false
		}
	} else {
		for _, s := range r.obs.Seen(r.id) {
			evs = append(evs, s.Event)
		}
	}
	var c events.Completion
	for _, ev := range evs {
		if events.IsTerminal(ev) {
			terminal = true
		}
		if c.Observe(ev) {
			complete = true
		}
	}
	return terminal, complete
}

// runKillNATS kills a node of the NATS cluster at the row's step: the stream's
// leader, or a node that is not.
func (r *rowRun) runKillNATS(ctx context.Context) error {
	if r.row.Step == StepCut {
		r.proxy.Hold(harness.IsSnapshotCreate)
	}
	if r.requestTo(ctx, r.row.Step) {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		leader, err := StreamLeader(lctx, r.js, events.DefaultStream)
		cancel()
		if err != nil {
			return err
		}
		target := r.cluster.Node(leader)
		if r.row.Service == NATSNode {
			for _, n := range r.cluster.Nodes {
				if n.Name != leader {
					target = n
					break
				}
			}
		}
		if target == nil {
			return fmt.Errorf("no node %s", leader)
		}
		if err := target.Kill(ctx); err != nil {
			return err
		}
		r.kills = append(r.kills, kill{target.Name, time.Now()})
		r.lastFault = time.Now()
		if r.row.Step == StepCut {
			r.proxy.Release()
		}
		if r.row.Restart {
			if err := target.Start(); err != nil {
				return err
			}
			if err := target.WaitReady(ctx); err != nil {
				return err
			}
		}
	}
	if r.row.Step == StepCut {
		r.proxy.Release()
	}
	return r.waitEnd(ctx)
}

// runRestartAPI SIGKILLs kube-apiserver at the row's step and starts it
// again.
func (r *rowRun) runRestartAPI(ctx context.Context) error {
	if !r.requestTo(ctx, r.row.Step) {
		return r.waitEnd(ctx)
	}
	r.kills = append(r.kills, kill{"kube-apiserver", time.Now()})
	down, err := r.e.cfg.Cluster.RestartAPIServer(ctx, 0)
	if err != nil {
		return err
	}
	r.lastFault = time.Now()
	r.apiBackAt = r.lastFault
	r.e.cfg.Log.InfoContext(ctx, "kube-apiserver restarted", "unreachable_for", down.Round(10*time.Millisecond))
	return r.waitEnd(ctx)
}

// runCutExec cuts every exec stream in flight at the row's step (a hook's).
func (r *rowRun) runCutExec(ctx context.Context) error {
	if !r.requestTo(ctx, r.row.Step) {
		return r.waitEnd(ctx)
	}
	if n := r.proxy.CutExecs(); n == 0 {
		r.violate("no exec stream in flight at %q", r.row.Step)
	}
	r.kills = append(r.kills, kill{"exec stream", time.Now()})
	r.lastFault = time.Now()
	return r.waitEnd(ctx)
}

func (r *rowRun) kindsSeen() string {
	var out []events.Kind
	for _, s := range r.obs.Seen(r.id) {
		out = append(out, s.Event.Kind())
	}
	return compactKinds(out)
}

func (r *rowRun) runHoldCut(ctx context.Context) error {
	r.proxy.Hold(harness.IsSnapshotCreate)
	r.requestTo(ctx, StepCut)
	// Held until the watchdog ended the freeze, then let through.
	tctx, cancel := context.WithTimeout(ctx, r.e.bound()+30*time.Second)
	defer cancel()
	if _, err := r.obs.WaitKind(tctx, r.id, events.KindResumed); err != nil {
		r.violate("no Resumed while the cut was held: %v", r.kindsSeen())
	}
	r.proxy.Release()
	r.lastFault = time.Now()
	return r.waitEnd(ctx)
}

func (r *rowRun) runStopHolder(ctx context.Context) error {
	r.request(ctx)
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	q, err := r.obs.WaitKind(qctx, r.id, events.KindQuiesced)
	if err != nil {
		r.violate("step %q never reached (%v)", StepQuiesced, err)
		return r.waitEnd(ctx)
	}
	holder := q.Event.Payload.(*events.Quiesced).Holder
	svc := r.service(holder)
	if svc == nil {
		return fmt.Errorf("quiesced by %q, not one of the hooker replicas", holder)
	}
	if err := svc.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	// Stopped past its lease: until the other replica ended the freeze (or
	// long past the cap if it does not).
	stopped := time.Now()
	_ = poll(ctx, r.e.bound()+10*time.Second, 50*time.Millisecond, "the other replica ends the freeze", func() (bool, error) {
		terminal, _ := r.ended()
		return terminal && time.Since(stopped) > 2*leaseStaleAfter, nil
	})
	if err := svc.Signal(syscall.SIGCONT); err != nil {
		return err
	}
	r.lastFault = time.Now()
	return r.waitEnd(ctx)
}

func (r *rowRun) runRedeliver(ctx context.Context) error {
	if r.row.FailedBase {
		// Held for good: the watchdog fails the backup; a create after
		// that would be held too, and counted.
		r.proxy.Hold(harness.IsSnapshotCreate)
	}
	r.request(ctx)
	if err := r.waitEnd(ctx); err != nil {
		return err
	}
	if len(r.violations) > 0 {
		return nil
	}
	// Let the ending settle (a snapshot of a failed backup deleted, a
	// successful one's cut recorded) before taking the baseline.
	if err := r.settleSnapshots(ctx); err != nil {
		return err
	}
	if err := r.takeBaseline(ctx); err != nil {
		return err
	}
	n, err := r.republish(ctx, events.Kind(r.row.Redeliver))
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("no %s event of backup %s to redeliver (%v)", r.row.Redeliver, r.id, r.kindsSeen())
	}
	r.republished = true
	r.lastFault = time.Now()
	return nil
}

func (r *rowRun) takeBaseline(ctx context.Context) error {
	ms, err := Markers(r.e.markers)
	if err != nil {
		return err
	}
	snaps, err := r.snapshots(ctx)
	if err != nil {
		return err
	}
	_, held := r.proxy.Held()
	r.baseline = baseline{pre: countPhase(ms, PreHook), snapshots: len(snaps), held: held, at: time.Now()}
	return nil
}

// republish publishes again every stored event of kind of the backup, the
// same event with a new Nats-Msg-Id so that the stream's duplicate window
// keeps it, as a redelivery the services must tolerate.
func (r *rowRun) republish(ctx context.Context, kind events.Kind) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stored, err := r.client.List(ctx, events.Filter{BackupID: r.id, Kinds: []events.Kind{kind}}, events.SubscribeOptions{FromStart: true})
	if err != nil {
		return 0, err
	}
	var msgs []*nats.Msg
	for _, ev := range stored {
		m, err := events.Encode(ev)
		if err != nil {
			return 0, fmt.Errorf("republish %s: %w", ev.CloudEvent.ID(), err)
		}
		m.Header.Set(jetstream.MsgIDHeader, ev.CloudEvent.ID()+".chaos-redelivery."+nuid.Next())
		msgs = append(msgs, m)
	}
	for _, m := range msgs {
		ack, err := r.js.PublishMsg(ctx, m)
		if err != nil {
			return 0, fmt.Errorf("republish %s: %w", m.Subject, err)
		}
		if ack.Duplicate {
			return 0, fmt.Errorf("republish %s: dropped as a duplicate", m.Subject)
		}
	}
	return len(msgs), nil
}

func countPhase(ms []Marker, phase string) int {
	n := 0
	for _, m := range ms {
		if m.Phase == phase {
			n++
		}
	}
	return n
}

// hooksSummary says how often each hook ran.
func hooksSummary(ms []Marker) string {
	return fmt.Sprintf("pre %d, post %d", countPhase(ms, PreHook), countPhase(ms, PostHook))
}

func (r *rowRun) logTails() string {
	var b strings.Builder
	for _, s := range r.svcs {
		fmt.Fprintf(&b, "--- %s (%s)\n%s\n", s.Name, s.Log, logTail(s.Log, 20))
	}
	return b.String()
}
