package freeze

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/client-go/dynamic"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/pkg/workload"
	"github.com/freezeframe/freezeframe/services/hooker/blueprint"
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
	log        *slog.Logger
	holder     string

	// sessions are the lock sessions this replica holds, by backup.
	sessions *session.Registry

	mu       sync.Mutex
	frozen   map[string]*frozenState // by backup id, on the replica that froze
	resuming map[string]bool
	resumed  map[string]time.Time // recently resumed, to absorb duplicate triggers
}

type frozenState struct {
	plan       *plan
	quiescedAt time.Time
	timer      *time.Timer
}

// New returns a hooker over its dependencies.
func New(cfg Config, d Deps, log *slog.Logger) *Service {
	if cfg.HookTimeout <= 0 {
		cfg.HookTimeout = time.Minute
	}
	if cfg.MaxFreeze <= 0 {
		cfg.MaxFreeze = 5 * time.Minute
	}
	return &Service{
		cfg: cfg, lookup: d.Lookup,
		workloads: d.Workloads, blueprints: d.Blueprints, objects: d.Objects, exec: d.Exec, pub: d.Publisher,
		log: log, holder: cfg.replica(), sessions: &session.Registry{},
		frozen: map[string]*frozenState{}, resuming: map[string]bool{}, resumed: map[string]time.Time{},
	}
}

// Kinds are the events the hooker handles.
var Kinds = []events.Kind{events.KindRequested, events.KindSnapshotted, events.KindFailed, events.KindUnlockRequested}

// Run consumes events until ctx ends.
func (s *Service) Run(ctx context.Context, js jetstream.JetStream) error {
	c, err := events.NewConsumer(ctx, js, events.ConsumerConfig{
		Stream: s.cfg.NATS.Stream, Durable: "hooker", Kinds: Kinds,
		AckWait: s.cfg.AckWait, Concurrency: s.cfg.Concurrency, ShutdownGrace: s.cfg.ShutdownTimeout,
	}, s.Handle, s.log)
	if err != nil {
		return err
	}
	err = c.Run(ctx)
	s.endSessionsAtShutdown(context.WithoutCancel(ctx))
	return err
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
	s := New(cfg, Deps{
		Workloads:  workload.NewResolver(kc),
		Blueprints: NewKubeBlueprints(dc, cfg.BlueprintNamespace),
		Objects:    NewKubeObjects(kc),
		Exec:       podexec.New(rc, kc),
		Publisher:  bus.Publisher,
		Lookup: func(ctx context.Context, k events.Kind, ref events.BackupRef) (events.Event, error) {
			return events.Lookup(ctx, bus.JetStream, cfg.NATS.Stream, k, ref)
		},
	}, log)
	return s.Run(ctx, bus.JetStream)
}

// Handle dispatches one event.
func (s *Service) Handle(ctx context.Context, ev events.Event) error {
	switch p := ev.Payload.(type) {
	case *events.BackupRequested:
		return s.freeze(ctx, p)
	case *events.Snapshotted:
		return s.resume(ctx, p.BackupRef, events.ResumeAfterSnapshot, nil)
	case *events.BackupFailed:
		if !p.ResumePending {
			return nil
		}
		reason := events.ResumeAfterFailure
		if p.Step == events.StepQuiesce {
			reason = events.ResumeAfterPrehookFailed
		}
		return s.resume(ctx, p.BackupRef, reason, nil)
	case *events.UnlockRequested:
		if s.alreadyResumed(ctx, p.BackupRef) {
			return nil
		}
		reason := events.ResumeStaleLock
		if p.RequestedBy == "operator" {
			reason = events.ResumeOperator
		}
		// The failure is announced once this replica owns the resume, so
		// that its own BackupFailed handler does not resume it first.
		return s.resume(ctx, p.BackupRef, reason, func() error {
			return s.publishOnce(ctx, &events.BackupFailed{BackupRef: p.BackupRef, Step: events.StepFreeze, Reason: "unlock requested: " + p.Reason, ResumePending: true})
		})
	}
	return events.Permanent(fmt.Errorf("hooker does not handle %s", ev.Kind()))
}

// freeze runs the pre-hook and reports Quiesced, or why it could not.
func (s *Service) freeze(ctx context.Context, req *events.BackupRequested) error {
	log := s.log.With("backup_id", req.BackupID, "workload", req.Workload.String())
	p, err := s.prepare(ctx, req)
	if err != nil {
		return s.failBeforeFreeze(ctx, req.BackupRef, events.StepResolve, err)
	}
	log.InfoContext(ctx, "freezing", "blueprint", p.blueprint, "max_freeze", p.maxFreeze)
	hooks, err := s.runAction(ctx, p, p.pre, true)
	quiescedAt := time.Now()
	st := &frozenState{plan: p, quiescedAt: quiescedAt}
	s.mu.Lock()
	s.frozen[req.BackupID] = st
	s.mu.Unlock()
	if err != nil {
		// Part of the pre-hook may have frozen something: resume through the
		// failure event, like every other resume.
		log.WarnContext(ctx, "pre-hook failed", "err", err)
		if perr := s.publishOnce(ctx, &events.BackupFailed{BackupRef: req.BackupRef, Step: events.StepQuiesce, Reason: err.Error(), ResumePending: true}); perr != nil {
			return s.resumeInline(ctx, p, perr)
		}
		return nil
	}
	deadline := quiescedAt.Add(p.maxFreeze)
	st.timer = time.AfterFunc(p.maxFreeze, func() { s.maxFreezeExceeded(req.BackupRef, p.maxFreeze) })
	q := &events.Quiesced{BackupRef: req.BackupRef, QuiescedAt: quiescedAt, FreezeDeadline: deadline, Holder: s.holder, Blueprint: p.blueprint, Hooks: hooks, SnapshotClass: p.class, Volumes: p.volumes}
	if err := s.publishOnce(ctx, q); err != nil {
		// Nobody will snapshot or resume what nobody heard of: unfreeze now.
		return s.resumeInline(ctx, p, err)
	}
	log.InfoContext(ctx, "quiesced", "hooks", len(hooks), "freeze_deadline", deadline)
	return nil
}

// maxFreezeExceeded asks for a resume when the snapshot takes longer than
// the freeze cap; the watchdog does the same for replicas that died.
func (s *Service) maxFreezeExceeded(ref events.BackupRef, cap time.Duration) {
	ctx := context.Background()
	s.mu.Lock()
	_, still := s.frozen[ref.BackupID]
	s.mu.Unlock()
	if !still {
		return
	}
	s.log.Warn("maximum freeze exceeded, requesting unlock", "backup_id", ref.BackupID, "max_freeze", cap)
	if _, _, err := s.pub.Publish(ctx, &events.UnlockRequested{BackupRef: ref, Reason: fmt.Sprintf("frozen longer than the %s cap", cap), RequestedBy: "hooker/" + s.holder, Holder: s.holder}); err != nil {
		s.log.Error("request unlock after max freeze", "backup_id", ref.BackupID, "err", err)
	}
}

// resumeInline unfreezes at once when the freeze could not be announced,
// and returns the announcing error so the request is retried later.
func (s *Service) resumeInline(ctx context.Context, p *plan, cause error) error {
	s.log.ErrorContext(ctx, "cannot announce freeze, resuming now", "backup_id", p.ref.BackupID, "err", cause)
	_ = s.releaseSessions(ctx, p.ref)
	if _, err := s.runAction(ctx, p, p.post, false); err != nil {
		s.log.ErrorContext(ctx, "inline resume failed", "backup_id", p.ref.BackupID, "err", err)
	}
	s.mu.Lock()
	if st := s.frozen[p.ref.BackupID]; st != nil && st.timer != nil {
		st.timer.Stop()
	}
	delete(s.frozen, p.ref.BackupID)
	s.mu.Unlock()
	return cause
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
// when set, runs first, once this replica owns the resume.
func (s *Service) resume(ctx context.Context, ref events.BackupRef, reason string, announce func() error) error {
	s.mu.Lock()
	if _, done := s.resumed[ref.BackupID]; done {
		s.mu.Unlock()
		return nil
	}
	if s.resuming[ref.BackupID] {
		s.mu.Unlock()
		return errors.New("resume already in progress on this replica")
	}
	s.resuming[ref.BackupID] = true
	st := s.frozen[ref.BackupID]
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.resuming, ref.BackupID)
		s.mu.Unlock()
	}()

	if announce != nil {
		if err := announce(); err != nil {
			return err
		}
	}
	postStart := time.Now()
	var p *plan
	var frozenFor time.Duration
	if st != nil {
		p, frozenFor = st.plan, postStart.Sub(st.quiescedAt)
	} else {
		if s.alreadyResumed(ctx, ref) {
			return nil
		}
		var err error
		if p, frozenFor, err = s.rebuild(ctx, ref); err != nil {
			return s.failResume(ctx, ref, err)
		}
		if holdsSessions(p.pre) && reason == events.ResumeAfterSnapshot {
			// The replica that held the lock sessions is gone, and its locks
			// went with it: the snapshot may have been cut unlocked.
			reason = events.ResumeAfterFailure
			if err := s.publishOnce(ctx, &events.BackupFailed{BackupRef: ref, Step: events.StepFreeze, Reason: "the hooker holding the lock session is gone; the lock ended with it", ResumePending: true}); err != nil {
				return err
			}
		}
	}
	// Session-held locks first: releasing them is the fastest unfreeze.
	lost := s.releaseSessions(ctx, ref)
	hooks, err := s.runAction(ctx, p, p.post, false)
	if err != nil {
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
	s.mu.Lock()
	if st != nil && st.timer != nil {
		st.timer.Stop()
	}
	delete(s.frozen, ref.BackupID)
	s.resumed[ref.BackupID] = time.Now()
	s.pruneResumed()
	s.mu.Unlock()
	s.log.InfoContext(ctx, "resumed", "backup_id", ref.BackupID, "reason", reason, "frozen_for", frozenFor)
	return s.publishOnce(ctx, &events.Resumed{BackupRef: ref, ResumedAt: time.Now(), Reason: reason, Succeeded: reason == events.ResumeAfterSnapshot, FrozenFor: events.Duration(frozenFor), Hooks: hooks})
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
func (s *Service) rebuild(ctx context.Context, ref events.BackupRef) (*plan, time.Duration, error) {
	if s.lookup == nil {
		return nil, 0, errors.New("no event lookup to rebuild the resume plan")
	}
	reqEv, err := s.lookup(ctx, events.KindRequested, ref)
	if err != nil {
		return nil, 0, err
	}
	req := reqEv.Payload.(*events.BackupRequested)
	p, err := s.prepare(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	var frozenFor time.Duration
	if q, err := s.lookup(ctx, events.KindQuiesced, ref); err == nil {
		frozenFor = time.Since(q.Payload.(*events.Quiesced).QuiescedAt)
	}
	return p, frozenFor, nil
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
