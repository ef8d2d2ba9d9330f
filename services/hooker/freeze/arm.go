package freeze

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/services/hooker/armed"
	"github.com/freezeframe/freezeframe/services/hooker/blueprint"
	"github.com/freezeframe/freezeframe/services/hooker/podexec"
)

// armReadyTimeout bounds the wait for an armed exec to start. Arming runs
// before the pre-hook (it is not frozen time), but it delays the freeze: a
// pod slow to exec falls back to an ordinary exec at the resume instead.
const armReadyTimeout = 10 * time.Second

// armTarget is one exec of one post-hook phase.
type armTarget struct{ phase, pod, container string }

// armSet is a backup's armed post-hook execs (package armed), opened before
// the freeze, each used once by the resume. Its methods are nil-safe: a
// plan rebuilt by another replica has none.
type armSet struct {
	mu   sync.Mutex
	m    map[armTarget]*armed.Arm
	used map[armTarget]*armed.Arm // resumed or disarmed, kept to tell losses
}

func (a *armSet) add(t armTarget, arm *armed.Arm) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m, a.used = map[armTarget]*armed.Arm{}, map[armTarget]*armed.Arm{}
	}
	a.m[t] = arm
}

// take returns the arm of t, once; nil when t is not armed.
func (a *armSet) take(t armTarget) *armed.Arm {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	arm := a.m[t]
	if arm != nil {
		delete(a.m, t)
		a.used[t] = arm
	}
	return arm
}

// takePhase returns the unused arms of one phase, each once.
func (a *armSet) takePhase(phase string) map[armTarget]*armed.Arm {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[armTarget]*armed.Arm{}
	for t, arm := range a.m {
		if t.phase == phase {
			out[t] = arm
			delete(a.m, t)
			a.used[t] = arm
		}
	}
	return out
}

// armed reports whether any post-hook exec is armed and not yet used.
func (a *armSet) armed() bool {
	if a == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.m) > 0
}

// extend moves every arm's fire limit.
func (a *armSet) extend(fireUntil int64) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, arm := range a.m {
		arm.Extend(fireUntil)
	}
}

// lost returns an error naming every arm that ended before it was resumed
// or disarmed (the switch fired, the stream broke, the pod restarted), nil
// when none did.
func (a *armSet) lost() error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for _, set := range []map[armTarget]*armed.Arm{a.m, a.used} {
		for t, arm := range set {
			select {
			case <-arm.Lost():
				errs = append(errs, fmt.Errorf("phase %s: %w", t.phase, arm.Err()))
			default:
			}
		}
	}
	return errors.Join(errs...)
}

// disarmAll disarms the arms not used yet (another replica owns the
// resume, or the resume did not need them) and returns how many.
func (a *armSet) disarmAll() int {
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	n := len(a.m)
	for t, arm := range a.m {
		arm.Disarm()
		delete(a.m, t)
		a.used[t] = arm
	}
	return n
}

// disarm disarms p's unused arms, counted and logged.
func (s *Service) disarm(ctx context.Context, p *plan, why string) {
	if p == nil {
		return
	}
	if n := p.arms.disarmAll(); n > 0 {
		s.metrics.arms.Add(ctx, int64(n), metric.WithAttributes(attribute.String("outcome", armDisarmed)))
		s.log.InfoContext(ctx, "armed post-hook disarmed", "backup_id", p.ref.BackupID, "execs", n, "why", why)
	}
}

// fireLimit is the last unix millisecond at which an armed post-hook may
// still run by itself, for a freeze record valid until validUntil. A new
// freeze of the workload is possible only once this freeze's record ended;
// without this holder, only a takeover ends it, and only once the record
// went stale, which is after ValidUntil. So a fire at or before the limit
// can never thaw a later backup's freeze: the tolerance covers the pod's
// clock.
func fireLimit(validUntil time.Time) int64 {
	return validUntil.Add(-events.FreezeClockTolerance).UnixMilli()
}

// armedPhases are the post-hook phases to arm: KubeExec and KubeExecAll
// phases the blueprint did not mark attended (blueprint.AnnotationAttendedPhases).
func armedPhases(bp *blueprint.Blueprint, post *blueprint.Action) []blueprint.Phase {
	var out []blueprint.Phase
	for _, ph := range phasesOf(post) {
		if (ph.Func == blueprint.FuncKubeExec || ph.Func == blueprint.FuncKubeExecAll) && !bp.Attended(ph.Name) {
			out = append(out, ph)
		}
	}
	return out
}

// armPostHook opens, in parallel, the exec of every target of the phases
// to arm, before the wait for admission and the pre-hook, with the first
// fire limit fireUntil (0: not before the lease's writes move it). A phase whose arguments read a pre-hook
// phase's output cannot render yet and is not armed; an arm that fails is
// logged, and its target runs as an ordinary exec at the resume. Arming
// never fails a backup.
func (s *Service) armPostHook(ctx context.Context, p *plan, fireUntil int64) {
	type job struct {
		t       armTarget
		spec    blueprint.ExecSpec
		timeout time.Duration
	}
	var jobs []job
	for _, ph := range p.armable {
		p.mu.Lock()
		rendered, err := ph.RenderArgs(p.params)
		p.mu.Unlock()
		if err != nil {
			continue // reads the pre-hook's output: an ordinary exec at the resume
		}
		spec, err := ph.ExecSpec(rendered)
		if err != nil {
			continue // the resume reports it
		}
		timeout := spec.Timeout
		if timeout <= 0 {
			timeout = s.cfg.HookTimeout
		}
		for _, pod := range spec.Pods {
			for _, c := range spec.Containers {
				jobs = append(jobs, job{t: armTarget{ph.Name, pod, c}, spec: spec, timeout: min(timeout, armReadyTimeout)})
			}
		}
	}
	if len(jobs) == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() {
			arm, err := armed.Start(ctx, s.exec, armed.Spec{Namespace: j.spec.Namespace, Pod: j.t.pod, Container: j.t.container, Command: j.spec.Command,
				FireUntil: fireUntil, ReadyTimeout: j.timeout})
			if err != nil {
				s.countArm(ctx, armFallback)
				s.log.WarnContext(ctx, "post-hook not armed: it runs as an ordinary exec at the resume", "backup_id", p.ref.BackupID, "phase", j.t.phase,
					"pod", j.t.pod, "container", j.t.container, "err", redactedErr(err, p.secrets))
				return
			}
			p.arms.add(j.t, arm)
			s.countArm(ctx, armArmed)
		})
	}
	wg.Wait()
	s.log.InfoContext(ctx, "post-hook armed", "backup_id", p.ref.BackupID, "execs", len(jobs), "armed", countArmed(p.arms))
}

// execHook runs one hook exec: a post-hook's through its arm when the
// target was armed (one write on an open stream), else an ordinary exec.
// An arm that was lost runs the command as an ordinary exec (the post-hook
// runs at least once); the loss is reported by armSet.lost.
func (s *Service) execHook(ctx context.Context, p *plan, action, phase string, r podexec.Request) (podexec.Result, error) {
	if action != blueprint.ActionPosthook {
		return s.exec.Exec(ctx, r)
	}
	if arm := p.arms.take(armTarget{phase, r.Pod, r.Container}); arm != nil {
		res, err := arm.Resume(ctx)
		if !errors.Is(err, armed.ErrLost) {
			return res, err
		}
		s.countArm(ctx, armLost)
		s.log.WarnContext(ctx, "armed post-hook ended before the resume: running it again as an ordinary exec", "backup_id", p.ref.BackupID, "phase", phase,
			"pod", r.Pod, "container", r.Container, "err", redactedErr(err, p.secrets))
	}
	return s.exec.Exec(ctx, r)
}

func redactedErr(err error, secrets [][]byte) string { return blueprint.Redact(err.Error(), secrets) }

// Outcomes of arming, for MetricArmedPosthooks.
const (
	armArmed    = "armed"
	armFallback = "fallback"
	armLost     = "lost"
	armDisarmed = "disarmed"
)

func (s *Service) countArm(ctx context.Context, outcome string) {
	s.metrics.arms.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}

func countArmed(a *armSet) int {
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.m)
}
