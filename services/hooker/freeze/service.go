package freeze

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/pkg/workload"
	"github.com/freezeframe/freezeframe/services/hooker/admission"
	"github.com/freezeframe/freezeframe/services/hooker/blueprint"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
	"github.com/freezeframe/freezeframe/services/hooker/podexec"
	"github.com/freezeframe/freezeframe/services/hooker/session"
)

// Publisher publishes events (*events.Publisher).
type Publisher interface {
	Publish(ctx context.Context, p events.Payload, opts ...events.EventOption) (events.Event, bool, error)
}

// WorkloadResolver reads a workload and its pods (*workload.Resolver).
type WorkloadResolver interface {
	Resolve(ctx context.Context, namespace, kind, name string) (*workload.Info, error)
}

// BlueprintSource finds a blueprint by name for a workload's namespace.
type BlueprintSource interface {
	Blueprint(ctx context.Context, namespace, name string, kanisterFirst bool) (*blueprint.Blueprint, error)
}

// ObjectSource reads the objects blueprint phases name.
type ObjectSource interface {
	Secret(ctx context.Context, namespace, name string) (blueprint.Secret, error)
	ConfigMap(ctx context.Context, namespace, name string) (blueprint.ConfigMap, error)
}

// PodSource reads one pod, to check a hook's target just before the exec
// (KubeObjects).
type PodSource interface {
	Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
}

// Executor runs a command in a pod (*podexec.Executor).
type Executor interface {
	Exec(ctx context.Context, r podexec.Request) (podexec.Result, error)
}

// EventLookup reads a stored event of a backup (events.Lookup).
type EventLookup func(ctx context.Context, k events.Kind, ref events.BackupRef) (events.Event, error)

// Deps are the hooker's collaborators.
type Deps struct {
	Workloads  WorkloadResolver
	Blueprints BlueprintSource
	Objects    ObjectSource
	// Pods are read to check that a hook execs only into its workload's
	// pods or the allow-list's; without it every exec outside the pods
	// resolved for the backup is refused.
	Pods      PodSource
	Exec      Executor
	Publisher Publisher
	Lookup    EventLookup
	// Policies reads the BackupPolicy a scheduled request names, to honour
	// the retention it carries (KubePolicies); nil: no request's retention
	// is honoured.
	Policies PolicySource
	// Leases keeps one freeze lease per workload (lease.Open).
	Leases *lease.Store
}

// Service freezes and resumes applications.
type Service struct {
	cfg        Config
	lookup     EventLookup
	workloads  WorkloadResolver
	blueprints BlueprintSource
	objects    ObjectSource
	pods       PodSource
	execAllow  ExecAllowList
	policies   PolicySource
	exec       Executor
	pub        Publisher
	leases     *lease.Store
	log        *slog.Logger
	holder     string
	metrics    metrics
	tracer     trace.Tracer

	// sessions are the lock sessions this replica holds, by backupKey.
	sessions *session.Registry
	// ops are the freezes this replica takes part in (lifecycle.go).
	ops ops
	// gate admits freezes as their storage has room (admission.go).
	gate *admission.Gate

	// life ends when Run returns: lease renewals stop with the service, as
	// they would with the process.
	life    context.Context
	endLife context.CancelFunc
}

// New returns a hooker over its dependencies.
func New(cfg Config, d Deps, log *slog.Logger) *Service {
	if cfg.HookTimeout <= 0 {
		cfg.HookTimeout = time.Minute
	}
	if cfg.MaxFreeze <= 0 {
		cfg.MaxFreeze = 5 * time.Minute
	}
	life, endLife := context.WithCancel(context.Background())
	return &Service{
		life: life, endLife: endLife,
		cfg: cfg, lookup: d.Lookup,
		workloads: d.Workloads, blueprints: d.Blueprints, objects: d.Objects, pods: d.Pods, execAllow: cfg.ExecAllow, policies: d.Policies, exec: d.Exec, pub: d.Publisher, leases: d.Leases,
		log: log, holder: cfg.replica(), sessions: &session.Registry{}, gate: newGate(cfg),
		metrics: newMetrics(cfg.Common), tracer: otel.GetTracerProvider().Tracer(instrumentationName),
	}
}

// Event kinds: requests are shared out among the replicas; every replica
// sees every resume trigger and acts on those it holds (or takes over).
var (
	RequestKinds = []events.Kind{events.KindRequested}
	TriggerKinds = []events.Kind{events.KindSnapshotted, events.KindFailed, events.KindUnlockRequested}
)

// consumerBase is what the hooker's consumers share.
func (c Config) consumerBase() events.ConsumerConfig {
	base := events.ConsumerConfig{Stream: c.NATS.Stream, AckWait: c.AckWait, Concurrency: c.Concurrency, ShutdownGrace: c.ShutdownTimeout,
		MaxDeliver: c.MaxDeliver, Meters: c.Common.Runtime.Meters}
	if c.RetryMaxDelay > 0 {
		base.RetryDelay = events.ExponentialDelay(min(250*time.Millisecond, c.RetryMaxDelay), c.RetryMaxDelay)
	}
	return base
}

// SharedConsumers are the durables the hooker replicas share, as cfg sets
// them: `freezeframe setup` creates them (events.Setup).
func (c Config) SharedConsumers() []events.ConsumerConfig {
	reqCfg := c.consumerBase()
	reqCfg.Durable, reqCfg.Kinds = events.DurableHooker, RequestKinds
	// Few freezes start at once, so that resumes never wait for CPU behind
	// a crowd of pre-hooks.
	reqCfg.Concurrency = c.RequestConcurrency
	return []events.ConsumerConfig{reqCfg}
}

// Run consumes events and watches the freeze leases until ctx ends.
func (s *Service) Run(ctx context.Context, js jetstream.JetStream) error {
	reqCfg := s.cfg.SharedConsumers()[0]
	var requests *events.Consumer
	if err := service.AwaitSetUp(ctx, s.log, "bind the hooker's consumer", func(ctx context.Context) (err error) {
		requests, err = events.NewConsumer(ctx, js, reqCfg, s.Handle, s.log)
		return err
	}); err != nil {
		return err
	}
	// Resume triggers go to the replica that froze (it holds the plan in
	// memory, and any lock session): each replica reads all of them through
	// its own consumer, which only it can name, so it creates it.
	trigCfg := s.cfg.consumerBase()
	trigCfg.Durable, trigCfg.Kinds = events.HookerReplicaConsumerPrefix+consumerToken(s.holder), TriggerKinds
	trigCfg.NewOnly, trigCfg.InactiveThreshold, trigCfg.Owned = true, 24*time.Hour, true
	var triggers *events.Consumer
	if err := service.AwaitSetUp(ctx, s.log, "create the replica's consumer", func(ctx context.Context) (err error) {
		triggers, err = events.NewConsumer(ctx, js, trigCfg, s.Handle, s.log)
		return err
	}); err != nil {
		return err
	}
	stream := s.cfg.NATS.Stream
	if stream == "" {
		stream = events.DefaultStream
	}
	lag, err := service.ObserveConsumers(s.cfg.Common, js, stream, reqCfg.Durable, trigCfg.Durable)
	if err != nil {
		return err
	}
	defer func() { _ = lag.Unregister() }()
	gauges, err := s.observeLeases()
	if err != nil {
		return err
	}
	defer func() { _ = gauges.Unregister() }()
	admissionDone, err := s.runAdmission(ctx)
	if err != nil {
		return err
	}
	defer admissionDone()
	s.cfg.Runtime.Probe.Ready(js.Conn())
	watchdog := lease.NewWatchdog(s.leases, lease.WatchdogConfig{Replica: s.holder, Tick: s.cfg.WatchdogTick, SnapshotStallAfter: s.cfg.SnapshotStallAfter}, s.onStale, s.log)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return requests.Run(gctx) })
	g.Go(func() error { return triggers.Run(gctx) })
	g.Go(func() error { return watchdog.Run(gctx) })
	err = g.Wait()
	s.endHolderBoundAtShutdown(context.WithoutCancel(ctx))
	s.endLife()
	return err
}

// consumerToken makes a replica name usable in a consumer name.
func consumerToken(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// Run builds a hooker against the cluster in cfg and runs it until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	blueprintNamespaces, err := cfg.blueprintNamespaces(serviceAccountNamespaceFile)
	if err != nil {
		return err
	}
	if _, err := cfg.admissionConfig(); err != nil {
		return err
	}
	if w := cfg.blueprintNamespaceWarning(); w != "" {
		log.WarnContext(ctx, w, "blueprint_namespaces", blueprintNamespaces)
	}
	if cfg.NamespacedBlueprints {
		log.InfoContext(ctx, "blueprints are looked for in the workload's namespace, then in the blueprint namespaces", "blueprint_namespaces", blueprintNamespaces)
	} else {
		log.InfoContext(ctx, "blueprints are looked for in the blueprint namespaces only (HOOKER_NAMESPACED_BLUEPRINTS is off)", "blueprint_namespaces", blueprintNamespaces)
	}
	log.InfoContext(ctx, "hooks exec only into the pods of the workload they back up, and those of the exec allow-list", "exec_allow", cfg.ExecAllow.String())
	if w := cfg.deadMansSwitchWarning(); w != "" {
		log.WarnContext(ctx, w)
	}
	bus, err := service.OpenBus(ctx, cfg.Common, "hooker", log)
	if err != nil {
		return err
	}
	defer bus.Close()
	rc, kc, err := workload.Clientset(cfg.ClientConfig)
	if err != nil {
		return err
	}
	dc, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	var leases *lease.Store
	if err := service.AwaitSetUp(ctx, log, "open the freeze buckets", func(ctx context.Context) (err error) {
		leases, err = lease.Open(ctx, bus.JetStream, cfg.leaseConfig(bus.StreamMaxAge))
		return err
	}); err != nil {
		return err
	}
	s := New(cfg, Deps{
		Workloads:  workload.NewResolver(kc),
		Blueprints: NewKubeBlueprints(dc, cfg.NamespacedBlueprints, blueprintNamespaces...),
		Objects:    NewKubeObjects(kc),
		Pods:       NewKubeObjects(kc),
		Policies:   NewKubePolicies(dc),
		Exec:       podexec.New(rc, kc),
		Publisher:  bus.Publisher,
		Lookup:     events.NewStreamHistory(bus.JetStream, cfg.NATS.Stream).Lookup,
		Leases:     leases,
	}, log)
	return s.Run(ctx, bus.JetStream)
}

// Handle dispatches one event by its payload's type; the consumer already
// checked that the type is the one its subject names.
func (s *Service) Handle(ctx context.Context, ev events.Event) error {
	switch p := ev.Payload.(type) {
	case *events.BackupRequested:
		return s.freeze(ctx, p, ev.CloudEvent.Source())
	case *events.Snapshotted:
		s.observeCut(p)
		return s.resume(ctx, p.BackupRef, events.ResumeAfterSnapshot, false, nil)
	case *events.BackupFailed:
		if !p.ResumePending {
			return nil
		}
		reason := events.ResumeAfterFailure
		if p.Step == events.StepQuiesce {
			reason = events.ResumeAfterPrehookFailed
		}
		return s.resume(ctx, p.BackupRef, reason, false, nil)
	case *events.UnlockRequested:
		return s.unlock(ctx, p)
	}
	return events.Permanent(fmt.Errorf("hooker does not handle %s", ev.Kind()))
}

// publishOnce publishes, retrying briefly: the event id is deterministic, so
// a retry that the stream already stored is dropped as a duplicate.
func (s *Service) publishOnce(ctx context.Context, p events.Payload) error {
	var err error
	for attempt := range 5 {
		if _, _, err = s.pub.Publish(ctx, p); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
		}
	}
	return err
}

// releaseSessions ends the lock sessions this replica holds for a backup. It
// returns an error when a session had ended by itself before (the lock was
// not held until now); a failure to end one cleanly is only logged, since
// ending the stream ends the session and its lock either way.
func (s *Service) releaseSessions(ctx context.Context, ref events.BackupRef) error {
	var lost error
	k := backupKey(ref)
	for _, sess := range s.sessions.Sessions(k) {
		select {
		case <-sess.Lost():
			lost = fmt.Errorf("lock session ended before the resume, snapshot may not be application-consistent: %w", sess.Err())
		default:
		}
	}
	if err := s.sessions.Release(ctx, k); err != nil && !errors.Is(err, session.ErrLost) {
		s.log.WarnContext(ctx, "release lock session", "backup_id", ref.BackupID, "err", err)
	}
	return lost
}

// endHolderBoundAtShutdown ends what of each freeze is bound to this
// replica's streams (bound.go): exiting ends the lock sessions, and fires
// the armed post-hooks, anyway. Doing it here says so first (the backup
// fails: a snapshot cut after that would not be consistent), releases the
// sessions cleanly and runs the armed post-hooks in their phase order. A
// freeze with neither stays frozen for a takeover to resume, as before.
func (s *Service) endHolderBoundAtShutdown(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, o := range s.ops.all() {
		if !o.take(ctx) {
			continue
		}
		s.endHolderBound(ctx, o)
		o.give()
	}
}

func (s *Service) endHolderBound(ctx context.Context, o *op) {
	k := backupKey(o.ref)
	sessions := s.sessions.Has(k)
	armed := o.plan != nil && o.plan.arms.armed()
	switch {
	case sessions:
		s.announceFailure(ctx, o.ref, "hooker "+s.holder+" shut down while holding the lock session")
	case armed:
		s.announceFailure(ctx, o.ref, "hooker "+s.holder+" shut down while the post-hook was armed: it ran at the shutdown, without waiting for the snapshot")
	default:
		return
	}
	if sessions {
		if err := s.sessions.Release(ctx, k); err != nil {
			s.log.WarnContext(ctx, "release lock session at shutdown", "backup_id", o.ref.BackupID, "err", err)
		}
	}
	if armed {
		s.resumeArmed(ctx, o.plan)
	}
}

// resumeArmed runs the armed execs of a post-hook, phase by phase in the
// post-hook's order, and disarms nothing: what was not armed is left to
// the takeover.
func (s *Service) resumeArmed(ctx context.Context, p *plan) {
	for _, ph := range phasesOf(p.post) {
		targets := p.arms.takePhase(ph.Name)
		var wg sync.WaitGroup
		for t, arm := range targets {
			wg.Go(func() {
				if _, err := arm.Resume(ctx); err != nil {
					s.log.WarnContext(ctx, "armed post-hook at shutdown", "backup_id", p.ref.BackupID, "phase", t.phase, "pod", t.pod, "container", t.container,
						"err", redactedErr(err, p.secrets))
				}
			})
		}
		wg.Wait()
	}
	s.log.InfoContext(ctx, "armed post-hook ran at shutdown", "backup_id", p.ref.BackupID)
}
