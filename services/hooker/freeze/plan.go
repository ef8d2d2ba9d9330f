package freeze

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/workload"
	"github.com/freezeframe/freezeframe/services/hooker/blueprint"
	"github.com/freezeframe/freezeframe/services/hooker/podexec"
	"github.com/freezeframe/freezeframe/services/hooker/session"
)

// plan is everything needed to freeze and resume one backup, read from the
// API before anything is frozen.
type plan struct {
	ref       events.BackupRef
	blueprint string
	pre, post *blueprint.Action
	params    blueprint.Params
	secrets   [][]byte
	maxFreeze time.Duration
	class     string
	keep      int
	// retentionIgnored says why the request's snapshotsToKeep was not
	// applied (see trustedRetention); empty when it was, or set none.
	retentionIgnored string
	volumes          []string
	// scope is where the hooks may exec (confine.go).
	scope execScope
	// localBlueprint: the blueprint lives in the workload's namespace, so
	// whoever may write Blueprints there wrote it; it reads objects only
	// from that namespace.
	localBlueprint bool
	// armable are the post-hook phases to arm before the freeze; arms the
	// execs armed (arm.go).
	armable []blueprint.Phase
	arms    *armSet

	mu sync.Mutex // guards params.Phases outputs, written by parallel execs
}

// prepare resolves the workload and its blueprint, validates both hooks and
// fetches every object they name; source is the request's CloudEvents
// source. An error here means nothing was frozen.
func (s *Service) prepare(ctx context.Context, req *events.BackupRequested, source string) (*plan, error) {
	w := req.Workload
	info, err := s.workloads.Resolve(ctx, w.Namespace, w.Kind, w.Name)
	if err != nil {
		if errors.Is(err, workload.ErrNotFound) {
			return nil, events.Permanent(err)
		}
		return nil, err
	}
	name, kanisterFirst := workload.BlueprintOf(req.Blueprint, info.Annotations)
	if name == "" {
		return nil, events.Permanent(fmt.Errorf("%s has no blueprint: annotate it with %s or %s", w, AnnotationBlueprint, AnnotationKanisterBlueprint))
	}
	bp, err := s.blueprints.Blueprint(ctx, w.Namespace, name, kanisterFirst)
	if err != nil {
		if errors.Is(err, ErrBlueprintNotFound) || errors.Is(err, blueprint.ErrInvalid) {
			return nil, events.Permanent(err)
		}
		return nil, err
	}
	pre, post, err := hooksOf(bp)
	if err != nil {
		return nil, events.Permanent(err)
	}
	if len(info.Pods) == 0 {
		err := fmt.Errorf("%s: %w", w, workload.ErrNoPods)
		if info.Replicas == 0 {
			// Scaled to zero: no retry will bring a pod.
			return nil, events.Permanent(fmt.Errorf("%w (scaled to 0 replicas)", err))
		}
		return nil, err // pods may be starting: retried
	}
	keep, retentionIgnored, err := s.trustedRetention(ctx, req, source, info)
	if err != nil {
		return nil, err
	}
	if retentionIgnored != "" {
		s.log.WarnContext(ctx, "ignoring the request's retention", "backup_id", req.BackupID, "workload", w.String(), "reason", retentionIgnored)
	}
	class, keep, err := workload.SnapshotSettingsOf(req.SnapshotClass, keep, info.Annotations)
	if err != nil {
		return nil, events.Permanent(fmt.Errorf("%s: %w", w, err))
	}
	p := &plan{ref: req.BackupRef, blueprint: bp.Name, pre: pre, post: post, class: class, keep: keep, retentionIgnored: retentionIgnored, maxFreeze: s.cfg.MaxFreeze, volumes: info.PVCs(),
		scope: scopeOf(w, info), localBlueprint: bp.Namespace == w.Namespace, armable: armedPhases(bp, post), arms: &armSet{}}
	// The blueprint, then the request (a policy's), may shorten the cap,
	// never lengthen it past the operator's.
	if bp.MaxFreeze > 0 && bp.MaxFreeze < p.maxFreeze {
		p.maxFreeze = bp.MaxFreeze
	}
	if req.MaxFreeze > 0 && req.MaxFreeze.Std() < p.maxFreeze {
		p.maxFreeze = req.MaxFreeze.Std()
	}
	var object map[string]any
	if pre.Mentions("Object") || post.Mentions("Object") {
		if object, err = info.Content(); err != nil {
			return nil, events.Permanent(err)
		}
	}
	p.params = paramsOf(info, object, req.Options)
	for _, a := range []*blueprint.Action{pre, post} {
		for _, ph := range phasesOf(a) {
			if err := s.fetchObjects(ctx, p, ph); err != nil {
				return nil, err
			}
		}
	}
	p.secrets = p.params.SecretValues()
	// Render both hooks now, and check where they exec: a post-hook that
	// cannot render, an option that is not quoted or a target outside the
	// workload must fail before the application is frozen, not after.
	// Phases that read an earlier phase's output render only once it ran,
	// and are checked then.
	for _, ph := range append(phasesOf(pre), phasesOf(post)...) {
		if err := s.checkPhase(ctx, p, ph); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// checkPhase renders a phase as planned and checks its exec targets.
func (s *Service) checkPhase(ctx context.Context, p *plan, ph blueprint.Phase) error {
	rendered, err := ph.RenderArgs(p.params)
	if err != nil {
		if referencesOutput(err) {
			return nil
		}
		return events.Permanent(err)
	}
	targets, namespace, err := targetsOf(ph, rendered)
	if err != nil {
		return events.Permanent(err)
	}
	for _, pod := range targets {
		if err := s.checkTarget(ctx, p, ph.Name, namespace, pod, true); err != nil {
			return err
		}
	}
	return nil
}

// targetsOf decodes the pods a rendered phase execs into.
func targetsOf(ph blueprint.Phase, rendered map[string]any) (pods []string, namespace string, err error) {
	if ph.Func == blueprint.FuncKubeExecSession {
		spec, err := ph.SessionSpec(rendered)
		if err != nil {
			return nil, "", err
		}
		return []string{spec.Pod}, spec.Namespace, nil
	}
	spec, err := ph.ExecSpec(rendered)
	if err != nil {
		return nil, "", err
	}
	return spec.Pods, spec.Namespace, nil
}

// hooksOf returns a blueprint's validated pre- and post-hook. The post-hook
// may be left out only when the pre-hook holds its locks in sessions, which
// the resume releases by itself.
func hooksOf(bp *blueprint.Blueprint) (pre, post *blueprint.Action, err error) {
	if err := bp.Validate(blueprint.ActionPrehook); err != nil {
		return nil, nil, err
	}
	pre, _ = bp.Action(blueprint.ActionPrehook)
	if _, err := bp.Action(blueprint.ActionPosthook); err != nil {
		if holdsSessions(pre) {
			return pre, &blueprint.Action{}, nil
		}
		return nil, nil, fmt.Errorf("blueprint %s: action %s is missing: nothing would resume the application", bp.Name, blueprint.ActionPosthook)
	}
	if err := bp.Validate(blueprint.ActionPosthook); err != nil {
		return nil, nil, err
	}
	post, _ = bp.Action(blueprint.ActionPosthook)
	return pre, post, nil
}

// referencesOutput tells a post-hook that can only render once the pre-hook
// produced its output from one that is broken.
func referencesOutput(err error) bool { return strings.Contains(err.Error(), ".Output") }

func phasesOf(a *blueprint.Action) []blueprint.Phase {
	if a == nil {
		return nil
	}
	out := append([]blueprint.Phase(nil), a.Phases...)
	if a.DeferPhase != nil {
		out = append(out, *a.DeferPhase)
	}
	return out
}

func (s *Service) fetchObjects(ctx context.Context, p *plan, ph blueprint.Phase) error {
	if len(ph.Objects) == 0 {
		return nil
	}
	refs, err := ph.RenderObjects(p.params)
	if err != nil {
		return events.Permanent(err)
	}
	pp := p.params.Phases[ph.Name]
	if pp == nil {
		pp = &blueprint.PhaseParams{}
		p.params.Phases[ph.Name] = pp
	}
	for alias, ref := range refs {
		ns := ref.Namespace
		if ns == "" {
			ns = p.ref.Workload.Namespace
		}
		if p.localBlueprint && ns != p.ref.Workload.Namespace {
			return events.Permanent(fmt.Errorf("blueprint %s: phase %s: object %s is in namespace %s: a blueprint in the workload's namespace %s may read Secrets and ConfigMaps only there; "+
				"a blueprint that needs objects elsewhere belongs in one of the hooker's blueprint namespaces (HOOKER_BLUEPRINT_NAMESPACES)", p.blueprint, ph.Name, alias, ns, p.ref.Workload.Namespace))
		}
		var err error
		switch ref.Kind {
		case blueprint.KindSecret:
			var sec blueprint.Secret
			if sec, err = s.objects.Secret(ctx, ns, ref.Name); err == nil {
				if pp.Secrets == nil {
					pp.Secrets = map[string]blueprint.Secret{}
				}
				pp.Secrets[alias] = sec
			}
		case blueprint.KindConfigMap:
			var cm blueprint.ConfigMap
			if cm, err = s.objects.ConfigMap(ctx, ns, ref.Name); err == nil {
				if pp.ConfigMaps == nil {
					pp.ConfigMaps = map[string]blueprint.ConfigMap{}
				}
				pp.ConfigMaps[alias] = cm
			}
		}
		if err != nil {
			err = fmt.Errorf("blueprint %s: phase %s: object %s: %w", p.blueprint, ph.Name, alias, err)
			if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
				return events.Permanent(err)
			}
			return err
		}
	}
	return nil
}

// paramsOf builds the templates' parameters; object is the workload as
// unstructured content, nil when no template reads .Object.
func paramsOf(info *workload.Info, object map[string]any, options map[string]string) blueprint.Params {
	wp := &blueprint.WorkloadParams{Name: info.Name, Namespace: info.Namespace, PersistentVolumeClaims: map[string]map[string]string{}}
	for _, pod := range info.Pods {
		wp.Pods = append(wp.Pods, pod.Name)
		wp.Containers = append(wp.Containers, pod.Containers)
		wp.PersistentVolumeClaims[pod.Name] = pod.Claims
	}
	p := blueprint.Params{
		Namespace: blueprint.NamespaceParams{Name: info.Namespace},
		Object:    object,
		Time:      time.Now().UTC().Format(time.RFC3339Nano),
		Options:   options,
		Phases:    map[string]*blueprint.PhaseParams{},
	}
	if p.Options == nil {
		p.Options = map[string]string{}
	}
	if info.Kind == events.KindStatefulSet {
		p.StatefulSet = wp
	} else {
		p.Deployment = wp
	}
	return p
}

// runAction runs an action's phases in order, then its defer phase. With
// stopOnError (pre-hook) the first failing phase ends the action; without
// (post-hook) every phase is tried, so that one failed unlock does not
// leave the others locked.
func (s *Service) runAction(ctx context.Context, p *plan, a *blueprint.Action, stopOnError bool) ([]events.HookRun, error) {
	action := blueprint.ActionPosthook
	if a == p.pre {
		action = blueprint.ActionPrehook
	}
	var runs []events.HookRun
	var errs []error
	for _, ph := range a.Phases {
		r, err := s.runPhase(ctx, p, action, ph)
		runs = append(runs, r...)
		if err != nil {
			errs = append(errs, err)
			if stopOnError {
				break
			}
		}
	}
	if a.DeferPhase != nil {
		r, err := s.runPhase(ctx, p, action, *a.DeferPhase)
		runs = append(runs, r...)
		errs = append(errs, err)
	}
	return runs, errors.Join(errs...)
}

func (s *Service) runPhase(ctx context.Context, p *plan, action string, ph blueprint.Phase) ([]events.HookRun, error) {
	p.mu.Lock()
	rendered, err := ph.RenderArgs(p.params)
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if ph.Func == blueprint.FuncKubeExecSession {
		return s.startSession(ctx, p, action, ph, rendered)
	}
	spec, err := ph.ExecSpec(rendered)
	if err != nil {
		return nil, err
	}
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = s.cfg.HookTimeout
	}
	type target struct{ pod, container string }
	var targets []target
	for _, pod := range spec.Pods {
		for _, c := range spec.Containers {
			targets = append(targets, target{pod, c})
		}
	}
	runs := make([]events.HookRun, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ectx, span := s.startHookSpan(ctx, p, action, ph.Name, spec.Namespace, t.pod, t.container)
			defer func() { endHookSpan(span, errs[i]) }()
			// Checked again here: the pod may have changed since the plan,
			// and targets read from an earlier phase's output are first
			// known now. Not read again for the post-hook when the plan
			// vouched for the pod: resuming what this backup froze is the
			// safe direction, and a refusal (or an API read) there would
			// only lengthen the freeze.
			if err := s.checkTarget(ectx, p, ph.Name, spec.Namespace, t.pod, action == blueprint.ActionPosthook); err != nil {
				runs[i] = events.HookRun{Phase: ph.Name, Pod: t.pod, Container: t.container}
				errs[i] = err
				return
			}
			ectx, cancel := context.WithTimeoutCause(ectx, timeout, fmt.Errorf("hook timeout %s", timeout))
			defer cancel()
			start := time.Now()
			res, err := s.execHook(ectx, p, action, ph.Name, podexec.Request{Namespace: spec.Namespace, Pod: t.pod, Container: t.container, Command: spec.Command})
			took := time.Since(start)
			s.metrics.recordHook(ctx, action, ph.Name, took)
			runs[i] = events.HookRun{Phase: ph.Name, Pod: t.pod, Container: t.container, Duration: events.Duration(took)}
			if err != nil {
				errs[i] = fmt.Errorf("phase %s in %s/%s: %s", ph.Name, t.pod, t.container, blueprint.Redact(err.Error(), p.secrets))
				return
			}
			out, err := blueprint.ParseOutput(res.Stdout)
			if err != nil {
				errs[i] = fmt.Errorf("phase %s in %s/%s: %w", ph.Name, t.pod, t.container, err)
				return
			}
			if len(out) > 0 {
				p.mu.Lock()
				pp := p.params.Phases[ph.Name]
				if pp == nil {
					pp = &blueprint.PhaseParams{}
					p.params.Phases[ph.Name] = pp
				}
				if pp.Output == nil {
					pp.Output = map[string]any{}
				}
				for k, v := range out {
					pp.Output[k] = v
				}
				p.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return runs, errors.Join(errs...)
}

// startSession opens a session that holds a session-bound lock (FTWRL,
// pg_backup_start) until the resume releases it. The session outlives this
// call; it is registered under the backup so that the resume finds it.
func (s *Service) startSession(ctx context.Context, p *plan, action string, ph blueprint.Phase, rendered map[string]any) (_ []events.HookRun, err error) {
	spec, err := ph.SessionSpec(rendered)
	if err != nil {
		return nil, err
	}
	sctx, span := s.startHookSpan(ctx, p, action, ph.Name, spec.Namespace, spec.Pod, spec.Container)
	defer func() { endHookSpan(span, err) }()
	if err := s.checkTarget(sctx, p, ph.Name, spec.Namespace, spec.Pod, action == blueprint.ActionPosthook); err != nil {
		return nil, err
	}
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = s.cfg.HookTimeout
	}
	start := time.Now()
	sess, err := session.Start(sctx, s.exec, session.Spec{
		Namespace: spec.Namespace, Pod: spec.Pod, Container: spec.Container, Command: spec.Command,
		Stdin: spec.Stdin, ReadyPattern: spec.ReadyPattern, ReleaseInput: spec.ReleaseInput,
		ReadyTimeout: timeout,
		// The session ends itself past the freeze cap even if every resume
		// path failed: the lock cannot outlive the cap by much.
		MaxHold: p.maxFreeze + time.Minute,
		Redact:  func(m string) string { return blueprint.Redact(m, p.secrets) },
	})
	took := time.Since(start)
	s.metrics.recordHook(ctx, action, ph.Name, took)
	run := []events.HookRun{{Phase: ph.Name, Pod: spec.Pod, Container: spec.Container, Duration: events.Duration(took)}}
	if err != nil {
		return run, fmt.Errorf("phase %s in %s/%s: %w", ph.Name, spec.Pod, spec.Container, err)
	}
	s.sessions.Add(backupKey(p.ref), sess)
	return run, nil
}

// startHookSpan starts the span of one hook exec (or the start of one lock
// session), a child of the event being handled.
func (s *Service) startHookSpan(ctx context.Context, p *plan, action, phase, namespace, pod, container string) (context.Context, trace.Span) {
	return s.tracer.Start(ctx, "exec "+action, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("freezeframe.backup_id", p.ref.BackupID),
		attribute.String("freezeframe.blueprint", p.blueprint),
		attribute.String("freezeframe.hook.action", action),
		attribute.String("freezeframe.hook.phase", phase),
		attribute.String("k8s.namespace.name", namespace),
		attribute.String("k8s.pod.name", pod),
		attribute.String("k8s.container.name", container),
	))
}

func endHookSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
