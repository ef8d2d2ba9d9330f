package freeze

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/dynamic"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/pkg/workload"
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
	Exec       Executor
	Publisher  Publisher
	Lookup     EventLookup
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
	exec       Executor
	pub        Publisher
	leases     *lease.Store
	log        *slog.Logger
	holder     string
	metrics    metrics
	tracer     trace.Tracer

	// sessions are the lock sessions this replica holds, by backup.
	sessions *session.Registry

	// life ends when Run returns: lease renewals stop with the service, as
	// they would with the process.
	life     context.Context
	endLife  context.CancelFunc
	mu       sync.Mutex
	freezing map[string]bool         // pre-hook in progress here
	frozen   map[string]*frozenState // by backup id, on the replica that froze
	resuming map[string]bool
	resumed  map[string]time.Time // recently resumed, to absorb duplicate triggers
}

type frozenState struct {
	plan       *plan
	quiescedAt time.Time
	hold       *lease.Hold
	stopKeep   context.CancelFunc
	takenOver  bool // resumed for a replica that is gone
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
		workloads: d.Workloads, blueprints: d.Blueprints, objects: d.Objects, exec: d.Exec, pub: d.Publisher, leases: d.Leases,
		log: log, holder: cfg.replica(), sessions: &session.Registry{},
		metrics: newMetrics(cfg.Common), tracer: otel.GetTracerProvider().Tracer(instrumentationName),
		freezing: map[string]bool{}, frozen: map[string]*frozenState{}, resuming: map[string]bool{}, resumed: map[string]time.Time{},
	}
}

// Event kinds: requests are shared out among the replicas; every replica
// sees every resume trigger and acts on those it holds (or takes over).
var (
	RequestKinds = []events.Kind{events.KindRequested}
	TriggerKinds = []events.Kind{events.KindSnapshotted, events.KindFailed, events.KindUnlockRequested}
)

// Run consumes events and watches the freeze leases until ctx ends.
func (s *Service) Run(ctx context.Context, js jetstream.JetStream) error {
	base := events.ConsumerConfig{Stream: s.cfg.NATS.Stream, AckWait: s.cfg.AckWait, Concurrency: s.cfg.Concurrency, ShutdownGrace: s.cfg.ShutdownTimeout}
	reqCfg := base
	reqCfg.Durable, reqCfg.Kinds = "hooker", RequestKinds
	// Few freezes start at once, so that resumes never wait for CPU behind
	// a crowd of pre-hooks.
	reqCfg.Concurrency = s.cfg.RequestConcurrency
	requests, err := events.NewConsumer(ctx, js, reqCfg, s.Handle, s.log)
	if err != nil {
		return err
	}
	// Resume triggers go to the replica that froze (it holds the plan in
	// memory, and any lock session): each replica reads all of them through
	// its own consumer.
	trigCfg := base
	trigCfg.Durable, trigCfg.Kinds = "hooker-"+consumerToken(s.holder), TriggerKinds
	trigCfg.NewOnly, trigCfg.InactiveThreshold = true, 24*time.Hour
	triggers, err := events.NewConsumer(ctx, js, trigCfg, s.Handle, s.log)
	if err != nil {
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
	s.cfg.Runtime.Probe.Ready(js.Conn())
	watchdog := lease.NewWatchdog(s.leases, lease.WatchdogConfig{Replica: s.holder, Tick: s.cfg.WatchdogTick, SnapshotStallAfter: s.cfg.SnapshotStallAfter}, s.onStale, s.log)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return requests.Run(gctx) })
	g.Go(func() error { return triggers.Run(gctx) })
	g.Go(func() error { return watchdog.Run(gctx) })
	err = g.Wait()
	s.endSessionsAtShutdown(context.WithoutCancel(ctx))
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

// onStale is the watchdog's: a lease past its deadline, or whose holder
// stopped renewing, gets an UnlockRequested. Every replica's watchdog may
// fire; the deterministic event id lets the stream keep one.
func (s *Service) onStale(ctx context.Context, st lease.Stale) error {
	l := st.Lease
	u := &events.UnlockRequested{
		BackupRef: events.BackupRef{BackupID: l.BackupID, Workload: l.Workload},
		Reason:    st.Reason, RequestedBy: "watchdog/" + s.holder, Holder: l.Holder,
		HolderGone: st.Cause == lease.CauseStopped,
	}
	var opts []events.EventOption
	if u.HolderGone {
		// A new stall after a takeover is a new event.
		opts = append(opts, events.WithID(fmt.Sprintf("%s.unlock-requested.r%d", l.BackupID, st.Revision)))
	}
	s.log.WarnContext(ctx, "stale freeze lease, requesting unlock", "backup_id", l.BackupID, "workload", l.Workload.String(), "reason", st.Reason)
	_, dup, err := s.pub.Publish(ctx, u, opts...)
	if err == nil && !dup {
		// Every replica's watchdog fires; only the one whose event was
		// stored counts it.
		s.metrics.unlocks.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", string(st.Cause))))
	}
	return err
}

// Run builds a hooker against the cluster in cfg and runs it until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
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
	leases, err := lease.Open(ctx, bus.JetStream, cfg.leaseConfig())
	if err != nil {
		return err
	}
	s := New(cfg, Deps{
		Workloads:  workload.NewResolver(kc),
		Blueprints: NewKubeBlueprints(dc, cfg.BlueprintNamespace),
		Objects:    NewKubeObjects(kc),
		Exec:       podexec.New(rc, kc),
		Publisher:  bus.Publisher,
		Lookup: func(ctx context.Context, k events.Kind, ref events.BackupRef) (events.Event, error) {
			return events.Lookup(ctx, bus.JetStream, cfg.NATS.Stream, k, ref)
		},
		Leases: leases,
	}, log)
	return s.Run(ctx, bus.JetStream)
}

// Handle dispatches one event.
func (s *Service) Handle(ctx context.Context, ev events.Event) error {
	switch p := ev.Payload.(type) {
	case *events.BackupRequested:
		return s.freeze(ctx, p)
	case *events.Snapshotted:
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
		if s.alreadyResumed(ctx, p.BackupRef) {
			return nil
		}
		reason, why := events.ResumeStaleLock, "unlock requested: "+p.Reason
		if isOperatorUnlock(p) {
			reason, why = events.ResumeOperator, "an operator forced the resume"
			if p.RequestedBy != "" {
				why += " (" + p.RequestedBy + ")"
			}
		}
		// The failure is announced once this replica owns the resume, so
		// that its own BackupFailed handler does not resume it first.
		return s.resume(ctx, p.BackupRef, reason, p.HolderGone, func() error {
			return s.publishOnce(ctx, &events.BackupFailed{BackupRef: p.BackupRef, Step: events.StepFreeze, Reason: why, ResumePending: true})
		})
	}
	return events.Permanent(fmt.Errorf("hooker does not handle %s", ev.Kind()))
}

// isOperatorUnlock tells an operator's unlock (`freezeframe unlock`: reason
// "operator", requested by a user) from the watchdog's.
func isOperatorUnlock(p *events.UnlockRequested) bool {
	return p.Reason == events.ResumeOperator || strings.HasPrefix(p.RequestedBy, "operator")
}

// freeze takes the workload's lease, runs the pre-hook and reports
// Quiesced, or why it could not.
func (s *Service) freeze(ctx context.Context, req *events.BackupRequested) error {
	log := s.log.With("backup_id", req.BackupID, "workload", req.Workload.String())
	s.mu.Lock()
	if s.freezing[req.BackupID] {
		s.mu.Unlock()
		return errors.New("pre-hook of this backup already running on this replica")
	}
	if _, ok := s.frozen[req.BackupID]; ok {
		s.mu.Unlock()
		return nil // a duplicate delivery of a request already handled here
	}
	s.freezing[req.BackupID] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.freezing, req.BackupID)
		s.mu.Unlock()
	}()

	p, err := s.prepare(ctx, req)
	if err != nil {
		return s.failBeforeFreeze(ctx, req.BackupRef, events.StepResolve, err)
	}
	now := time.Now()
	hold, err := s.leases.Acquire(ctx, lease.Lease{BackupID: req.BackupID, Workload: req.Workload, Holder: s.holder, AcquiredAt: now, Deadline: now.Add(p.maxFreeze)})
	var held *lease.HeldError
	switch {
	case errors.As(err, &held) && held.Lease.BackupID == req.BackupID:
		return nil // another replica has this very backup in hand
	case errors.As(err, &held):
		// Never two freezes of one workload: wait (redelivery with backoff),
		// and say why on the last attempt.
		return s.failBeforeFreeze(ctx, req.BackupRef, events.StepQuiesce, err)
	case err != nil:
		return s.failBeforeFreeze(ctx, req.BackupRef, events.StepQuiesce, fmt.Errorf("take freeze lease: %w", err))
	}
	if l := hold.Lease(); !l.AcquiredAt.Equal(now) {
		// This replica held the lease before a restart: it does not know
		// what the pre-hook it was running had frozen.
		return s.recoverRestartedFreeze(ctx, req, l)
	}
	keepCtx, stopKeep := context.WithCancel(s.life)
	st := &frozenState{plan: p, hold: hold, stopKeep: stopKeep}
	go s.keep(keepCtx, st)

	log.InfoContext(ctx, "freezing", "blueprint", p.blueprint, "max_freeze", p.maxFreeze)
	hooks, err := s.runAction(ctx, p, p.pre, true)
	st.quiescedAt = time.Now()
	s.mu.Lock()
	s.frozen[req.BackupID] = st
	// From here a resume may run: a snapshot can be cut before Quiesced is
	// even acknowledged.
	delete(s.freezing, req.BackupID)
	s.mu.Unlock()
	if err != nil {
		// Part of the pre-hook may have frozen something: resume through the
		// failure event, like every other resume.
		log.WarnContext(ctx, "pre-hook failed", "err", err)
		if perr := s.publishOnce(ctx, &events.BackupFailed{BackupRef: req.BackupRef, Step: events.StepQuiesce, Reason: err.Error(), ResumePending: true}); perr != nil {
			return s.resumeInline(ctx, st, perr)
		}
		return nil
	}
	deadline := hold.Lease().Deadline
	q := &events.Quiesced{BackupRef: req.BackupRef, QuiescedAt: st.quiescedAt, FreezeDeadline: deadline, Holder: s.holder, Blueprint: p.blueprint, Hooks: hooks, SnapshotClass: p.class, SnapshotsToKeep: p.keep, Volumes: p.volumes}
	if err := s.publishOnce(ctx, q); err != nil {
		// Nobody will snapshot or resume what nobody heard of: unfreeze now.
		return s.resumeInline(ctx, st, err)
	}
	// After the announcement, not before: the snapshot starts meanwhile. A
	// crash in between leaves the lease "freezing", which a restart treats
	// as an unknown freeze and undoes.
	if err := hold.SetState(ctx, lease.StateFrozen); err != nil {
		log.WarnContext(ctx, "mark freeze lease frozen", "err", err)
	}
	log.InfoContext(ctx, "quiesced", "hooks", len(hooks), "freeze_deadline", deadline)
	return nil
}

// keep renews the freeze lease while this replica holds the freeze. If NATS
// cannot be reached for the lease's stale period, the watchdogs may already
// be unlocking and this replica would not hear of it: it resumes by itself.
func (s *Service) keep(ctx context.Context, st *frozenState) {
	err := st.hold.Keep(ctx)
	if errors.Is(err, lease.ErrStalled) {
		s.mu.Lock()
		_, still := s.frozen[st.plan.ref.BackupID]
		s.mu.Unlock()
		if still {
			_ = s.resumeInline(ctx, st, err)
		}
	}
}

// recoverRestartedFreeze handles a request this replica had started before
// it restarted (same replica name, lease still held).
func (s *Service) recoverRestartedFreeze(ctx context.Context, req *events.BackupRequested, l lease.Lease) error {
	if l.State != lease.StateFreezing {
		if _, err := s.lookup(ctx, events.KindQuiesced, req.BackupRef); err == nil {
			return nil // announced: the pipeline goes on, the resume takes over
		}
	}
	s.log.WarnContext(ctx, "restarted during this backup's pre-hook; resuming without a snapshot", "backup_id", req.BackupID, "lease_state", l.State)
	return s.publishOnce(ctx, &events.BackupFailed{BackupRef: req.BackupRef, Step: events.StepQuiesce,
		Reason: "hooker " + s.holder + " restarted while freezing; what the pre-hook froze is undone by the post-hook", ResumePending: true})
}

// resumeInline unfreezes at once when the freeze could not be announced,
// and returns the announcing error so the request is retried later.
func (s *Service) resumeInline(ctx context.Context, st *frozenState, cause error) error {
	p := st.plan
	s.log.ErrorContext(ctx, "cannot announce freeze, resuming now", "backup_id", p.ref.BackupID, "err", cause)
	_ = s.releaseSessions(ctx, p.ref)
	frozenFor := time.Since(st.quiescedAt)
	if _, err := s.runAction(ctx, p, p.post, false); err != nil {
		s.log.ErrorContext(ctx, "inline resume failed", "backup_id", p.ref.BackupID, "err", err)
		return cause // the lease stays: the watchdog will ask again
	}
	if !st.quiescedAt.IsZero() {
		s.metrics.freeze.Record(ctx, frozenFor.Seconds())
	}
	s.forget(ctx, p.ref.BackupID, st)
	return cause
}

// forget ends this replica's part in a backup it resumed: the lease is
// released, so the workload may be frozen again.
func (s *Service) forget(ctx context.Context, backupID string, st *frozenState) {
	s.mu.Lock()
	delete(s.frozen, backupID)
	s.resumed[backupID] = time.Now()
	s.pruneResumed()
	s.mu.Unlock()
	if st == nil || st.hold == nil {
		return
	}
	st.stopKeep()
	if err := st.hold.Release(context.WithoutCancel(ctx)); err != nil {
		s.log.WarnContext(ctx, "release freeze lease", "backup_id", backupID, "err", err)
	}
}

// failBeforeFreeze reports a failure that froze nothing. Transient errors
// are retried, except on the last delivery, which reports instead.
func (s *Service) failBeforeFreeze(ctx context.Context, ref events.BackupRef, step string, err error) error {
	if d, ok := events.DeliveryOf(ctx); !events.IsPermanent(err) && ok && !d.Last() {
		return err
	}
	s.log.WarnContext(ctx, "backup failed before freezing", "backup_id", ref.BackupID, "step", step, "err", err)
	return s.publishOnce(ctx, &events.BackupFailed{BackupRef: ref, Step: step, Reason: err.Error(), ResumePending: false})
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

// resume runs the post-hook once per backup and reports Resumed; announce,
// when set, runs first, once this replica owns the resume. The replica that
// froze owns it; another one takes it over only when the holder is gone
// (holderGone, or the lease names this replica from before a restart).
func (s *Service) resume(ctx context.Context, ref events.BackupRef, reason string, holderGone bool, announce func() error) error {
	s.mu.Lock()
	if _, done := s.resumed[ref.BackupID]; done {
		s.mu.Unlock()
		return nil
	}
	if s.resuming[ref.BackupID] || s.freezing[ref.BackupID] {
		s.mu.Unlock()
		return errors.New("this backup is being frozen or resumed on this replica")
	}
	s.resuming[ref.BackupID] = true
	st := s.frozen[ref.BackupID]
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.resuming, ref.BackupID)
		s.mu.Unlock()
	}()

	if st == nil {
		taken, err := s.takeOver(ctx, ref, holderGone)
		if err != nil || taken == nil {
			return err
		}
		st = taken
	}
	// The lease says "resuming" while the post-hook runs, not before it: the
	// write must not delay the unfreeze.
	marked := make(chan struct{})
	go func() {
		defer close(marked)
		if err := st.hold.SetState(ctx, lease.StateResuming); err != nil {
			s.log.WarnContext(ctx, "mark freeze lease resuming", "backup_id", ref.BackupID, "err", err)
		}
	}()
	defer func() { <-marked }()
	if announce != nil {
		if err := announce(); err != nil {
			return err
		}
	}
	p := st.plan
	frozenFor := time.Since(st.quiescedAt)
	if st.quiescedAt.IsZero() {
		frozenFor = 0
	}
	if st.takenOver && holdsSessions(p.pre) && reason == events.ResumeAfterSnapshot {
		// The replica that held the lock sessions is gone, and its locks
		// went with it: the snapshot may have been cut unlocked.
		reason = events.ResumeAfterFailure
		if err := s.publishOnce(ctx, &events.BackupFailed{BackupRef: ref, Step: events.StepFreeze, Reason: "the hooker holding the lock session is gone; the lock ended with it", ResumePending: true}); err != nil {
			return err
		}
	}
	// Session-held locks first: releasing them is the fastest unfreeze.
	lost := s.releaseSessions(ctx, ref)
	hooks, err := s.runAction(ctx, p, p.post, false)
	if err != nil {
		if serr := st.hold.SetState(ctx, lease.StateFrozen); serr != nil {
			s.log.WarnContext(ctx, "mark freeze lease frozen again", "backup_id", ref.BackupID, "err", serr)
		}
		if st.takenOver {
			s.mu.Lock()
			s.frozen[ref.BackupID] = st // retries use the rebuilt plan and the hold
			s.mu.Unlock()
		}
		return s.failResume(ctx, ref, err)
	}
	if lost != nil && reason == events.ResumeAfterSnapshot {
		// The lock ended before the resume: the snapshot may have been cut
		// with the application writing again.
		reason = events.ResumeAfterFailure
		if perr := s.publishOnce(ctx, &events.BackupFailed{BackupRef: ref, Step: events.StepFreeze, Reason: lost.Error(), ResumePending: true}); perr != nil {
			return perr
		}
	}
	if !st.quiescedAt.IsZero() {
		s.metrics.freeze.Record(ctx, frozenFor.Seconds())
	}
	s.log.InfoContext(ctx, "resumed", "backup_id", ref.BackupID, "reason", reason, "frozen_for", frozenFor)
	// Resumed before the lease goes: a crash in between leaves a lease whose
	// next owner finds the backup resumed and only releases it.
	if err := s.publishOnce(ctx, &events.Resumed{BackupRef: ref, ResumedAt: time.Now(), Reason: reason, Succeeded: reason == events.ResumeAfterSnapshot, FrozenFor: events.Duration(frozenFor), Hooks: hooks}); err != nil {
		return err
	}
	s.forget(ctx, ref.BackupID, st)
	return nil
}

// takeOver decides whether this replica resumes a backup it does not hold
// in memory, and if so takes the lease and rebuilds the plan. nil, nil: not
// this replica's to resume (another live replica holds it, or it is done).
func (s *Service) takeOver(ctx context.Context, ref events.BackupRef, holderGone bool) (*frozenState, error) {
	l, _, err := s.leases.Get(ctx, ref.Workload)
	switch {
	case errors.Is(err, lease.ErrNotHeld) || (err == nil && l.BackupID != ref.BackupID):
		return nil, nil // released: resumed already (or never frozen)
	case err != nil:
		return nil, err
	case l.Holder != s.holder && !holderGone:
		return nil, nil // the live holder got this trigger too
	}
	hold, err := s.leases.TakeOver(ctx, ref.Workload, ref.BackupID, s.holder)
	if errors.Is(err, lease.ErrNotHeld) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("take over freeze lease: %w", err)
	}
	keepCtx, stopKeep := context.WithCancel(s.life)
	go func() { _ = hold.Keep(keepCtx) }()
	st := &frozenState{hold: hold, stopKeep: stopKeep, takenOver: true}
	if s.alreadyResumed(ctx, ref) {
		s.forget(ctx, ref.BackupID, st) // resumed, but the lease outlived its holder
		return nil, nil
	}
	s.log.WarnContext(ctx, "taking over the resume of a backup frozen by another replica", "backup_id", ref.BackupID, "previous_holder", l.Holder)
	p, quiescedAt, err := s.rebuild(ctx, ref)
	if err != nil {
		stopKeep()
		return nil, s.failResume(ctx, ref, err)
	}
	st.plan, st.quiescedAt = p, quiescedAt
	return st, nil
}

func (s *Service) failResume(ctx context.Context, ref events.BackupRef, err error) error {
	if d, ok := events.DeliveryOf(ctx); ok && !d.Last() {
		return err // retried with backoff
	}
	s.log.ErrorContext(ctx, "post-hook failed for the last time: the application may still be frozen", "backup_id", ref.BackupID, "err", err)
	if perr := s.publishOnce(ctx, &events.BackupFailed{BackupRef: ref, Step: events.StepResume, Reason: "post-hook failed, application may still be frozen: " + err.Error()}); perr != nil {
		return perr
	}
	return nil
}

// rebuild makes the plan of a backup this replica did not freeze (it
// restarted, or another replica froze it) from the stored request.
func (s *Service) rebuild(ctx context.Context, ref events.BackupRef) (*plan, time.Time, error) {
	if s.lookup == nil {
		return nil, time.Time{}, errors.New("no event lookup to rebuild the resume plan")
	}
	reqEv, err := s.lookup(ctx, events.KindRequested, ref)
	if err != nil {
		return nil, time.Time{}, err
	}
	req := reqEv.Payload.(*events.BackupRequested)
	p, err := s.prepare(ctx, req)
	if err != nil {
		return nil, time.Time{}, err
	}
	var quiescedAt time.Time
	if q, err := s.lookup(ctx, events.KindQuiesced, ref); err == nil {
		quiescedAt = q.Payload.(*events.Quiesced).QuiescedAt
	}
	return p, quiescedAt, nil
}

// releaseSessions ends the lock sessions this replica holds for a backup. It
// returns an error when a session had ended by itself before (the lock was
// not held until now); a failure to end one cleanly is only logged, since
// ending the stream ends the session and its lock either way.
func (s *Service) releaseSessions(ctx context.Context, ref events.BackupRef) error {
	var lost error
	for _, sess := range s.sessions.Sessions(ref.BackupID) {
		select {
		case <-sess.Lost():
			lost = fmt.Errorf("lock session ended before the resume, snapshot may not be application-consistent: %w", sess.Err())
		default:
		}
	}
	if err := s.sessions.Release(ctx, ref.BackupID); err != nil && !errors.Is(err, session.ErrLost) {
		s.log.WarnContext(ctx, "release lock session", "backup_id", ref.BackupID, "err", err)
	}
	return lost
}

// alreadyResumed reports whether this replica or another one resumed the
// backup already, so that a late or duplicate trigger runs nothing twice.
func (s *Service) alreadyResumed(ctx context.Context, ref events.BackupRef) bool {
	s.mu.Lock()
	_, done := s.resumed[ref.BackupID]
	s.mu.Unlock()
	if done || s.lookup == nil {
		return done
	}
	_, err := s.lookup(ctx, events.KindResumed, ref)
	return err == nil
}

func (s *Service) pruneResumed() {
	if len(s.resumed) < 10000 {
		return
	}
	cutoff := time.Now().Add(-time.Hour)
	for id, at := range s.resumed {
		if at.Before(cutoff) {
			delete(s.resumed, id)
		}
	}
}

// endSessionsAtShutdown fails and releases the backups whose locks this
// replica still holds in sessions: exiting ends the sessions anyway, and a
// snapshot cut after that would not be consistent, so the backup must say so.
func (s *Service) endSessionsAtShutdown(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, id := range s.sessions.Backups() {
		s.mu.Lock()
		st := s.frozen[id]
		s.mu.Unlock()
		if st != nil {
			if err := s.publishOnce(ctx, &events.BackupFailed{BackupRef: st.plan.ref, Step: events.StepFreeze, Reason: "hooker " + s.holder + " shut down while holding the lock session", ResumePending: true}); err != nil {
				s.log.ErrorContext(ctx, "report lock session ended by shutdown", "backup_id", id, "err", err)
			}
		}
		if err := s.sessions.Release(ctx, id); err != nil {
			s.log.WarnContext(ctx, "release lock session at shutdown", "backup_id", id, "err", err)
		}
	}
}
