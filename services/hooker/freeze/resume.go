package freeze

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
	"github.com/freezeframe/freezeframe/services/hooker/session"
)

// resume handles a resume trigger (Snapshotted, a BackupFailed with a
// resume pending, an UnlockRequested): frozen → resuming → ended on the
// replica that holds the freeze, or on one that takes it over when the
// holder is gone (holderGone, or the lease names this replica from before a
// restart). announce, when set, is published once this replica owns the
// resume (its move to resuming succeeded), while the post-hook runs.
func (s *Service) resume(ctx context.Context, ref events.BackupRef, reason string, holderGone bool, announce *events.BackupFailed) error {
	o := s.ops.get(ref)
	if o == nil {
		var err error
		if o, err = s.takeOver(ctx, ref, holderGone); err != nil || o == nil {
			return err
		}
	}
	if !o.take(ctx) {
		return ctx.Err()
	}
	defer o.give()
	if o.hold == nil {
		return nil // the freeze never began, or this op ended meanwhile
	}
	if o.plan == nil && o.end == nil {
		p, quiescedAt, armedInPod, err := s.rebuild(ctx, ref)
		if err != nil {
			return s.failResume(ctx, o, err)
		}
		o.plan, o.quiescedAt, o.armedInPod = p, quiescedAt, armedInPod
	}
	return s.resumeHeld(ctx, o, reason, announce)
}

// resumeHeld moves a freeze this replica holds (and whose turn it has) to
// resuming, runs the post-hook and ends the backup.
func (s *Service) resumeHeld(ctx context.Context, o *op, reason string, announce *events.BackupFailed) error {
	if o.end != nil {
		return s.finish(ctx, o)
	}
	ref := o.ref
	marked, err := s.markResuming(ctx, o, reason)
	if err != nil {
		if errors.Is(err, lease.ErrLost) {
			s.lose(ctx, o, err)
			return nil
		}
		return fmt.Errorf("mark freeze resuming: %w", err)
	}
	defer func() { _ = marked() }()
	// The failure is announced while the post-hook runs, not before it: a
	// stream electing its leader must not keep the application frozen.
	// Resumed waits for it, so the events keep their order.
	announced := make(chan struct{})
	go func() {
		defer close(announced)
		if announce == nil {
			return
		}
		if err := s.publishOnce(ctx, announce); err != nil {
			// Resuming matters more than saying why: the end record and the
			// Resumed still tell that the backup failed.
			s.log.ErrorContext(ctx, "announce the failure", "backup_id", ref.BackupID, "err", err)
		}
	}()
	defer func() { <-announced }()
	p := o.plan
	if why := holderBoundLoss(o, p); why != "" && reason == events.ResumeAfterSnapshot {
		// What held the freeze in the holder's streams is gone with it:
		// the snapshot may have been cut unfrozen.
		reason = events.ResumeAfterFailure
		s.announceFailure(ctx, ref, why)
	}
	// The freeze is over from here on, as far as anyone may count on it:
	// measured before the first unlock (a session's release), so that a
	// write that got through when its lock went is never counted as made
	// during the freeze.
	frozenFor := time.Duration(0)
	if !o.quiescedAt.IsZero() {
		frozenFor = time.Since(o.quiescedAt)
	}
	// Session-held locks first: releasing them is the fastest unfreeze.
	lost := s.releaseSessions(ctx, ref)
	hooks, err := s.runAction(ctx, p, p.post, false)
	if armsLost := p.arms.lost(); armsLost != nil {
		lost = errors.Join(lost, errors.New(armsLostReason(armsLost, p.secrets)))
	}
	if err != nil {
		_ = marked()
		// resuming → frozen: the freeze is still on, and the watchdogs keep
		// asking (each ask a new revision, so a new event).
		if serr := o.hold.SetState(ctx, lease.StateFrozen); serr != nil {
			s.log.WarnContext(ctx, "mark freeze frozen again after a failed post-hook", "backup_id", ref.BackupID, "err", serr)
		}
		return s.failResume(ctx, o, err)
	}
	if lost != nil && reason == events.ResumeAfterSnapshot {
		// The lock ended before the resume: the snapshot may have been cut
		// with the application writing again.
		reason = events.ResumeAfterFailure
		s.announceFailure(ctx, ref, lost.Error())
	}
	if !o.quiescedAt.IsZero() {
		s.metrics.freeze.Record(ctx, frozenFor.Seconds())
	}
	s.log.InfoContext(ctx, "resumed", "backup_id", ref.BackupID, "workload", ref.Workload.String(), "reason", reason, "frozen_for", frozenFor)
	o.end = &events.FreezeEnd{BackupID: ref.BackupID, Workload: ref.Workload, Epoch: o.hold.Epoch(), Succeeded: reason == events.ResumeAfterSnapshot,
		Reason: reason, Resumed: true, FrozenFor: events.Duration(frozenFor), EndedAt: time.Now().UTC()}
	o.resumeHooks = hooks
	<-announced
	return s.finish(ctx, o)
}

// markAttempt bounds one write of the freeze record on the resume path: a
// bucket electing its leader must not hold the application frozen for
// the client's whole request timeout.
const markAttempt = 500 * time.Millisecond

// markResuming moves the freeze to resuming before the post-hook runs. The
// snapshotter's check after its cut relies on it, and a replica that lost
// the lease stops here (ErrLost). When the bucket does not answer (a leader
// election, NATS out of reach), the post-hook runs without waiting for the
// write (marked waits for the write, tried beside it) in two cases:
//
//   - after Snapshotted, while the record is valid: every cut of this
//     backup was checked before Snapshotted went out, and while the record
//     is valid no watchdog can have taken the freeze over;
//   - once the record is past ValidUntil (and the clock tolerance): no
//     snapshotter counts the application frozen on its word any more.
//
// Otherwise it tries again until one of them holds, so the freeze cap and
// the stale period bound the freeze whatever the bucket does.
func (s *Service) markResuming(ctx context.Context, o *op, reason string) (marked func() error, err error) {
	hold := o.hold
	for {
		actx, cancel := context.WithTimeout(ctx, markAttempt)
		err := hold.SetState(actx, lease.StateResuming)
		cancel()
		switch {
		case err == nil:
			return func() error { return nil }, nil
		case errors.Is(err, lease.ErrLost), ctx.Err() != nil:
			return nil, err
		case reason == events.ResumeAfterSnapshot && time.Now().Before(hold.ValidUntil()),
			!time.Now().Before(hold.ValidUntil().Add(events.FreezeClockTolerance)):
			s.log.WarnContext(ctx, "cannot write the freeze record; resuming without waiting for it", "backup_id", o.ref.BackupID, "reason", reason,
				"valid_until", hold.ValidUntil(), "err", err)
			return s.markBeside(ctx, o), nil
		}
		s.log.WarnContext(ctx, "cannot write the freeze record yet; the post-hook waits for it", "backup_id", o.ref.BackupID, "valid_until", hold.ValidUntil(), "err", err)
		select {
		case <-time.After(min(100*time.Millisecond, time.Until(hold.ValidUntil().Add(events.FreezeClockTolerance)))):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// markBeside tries the resuming write once more while the post-hook runs;
// the returned func waits for it. A failure is only logged: the end recorded
// after the post-hook says what happened.
func (s *Service) markBeside(ctx context.Context, o *op) func() error {
	hold := o.hold
	done := make(chan error, 1)
	go func() {
		bctx, cancel := context.WithTimeout(ctx, 3*markAttempt)
		defer cancel()
		done <- hold.SetState(bctx, lease.StateResuming)
	}()
	return sync.OnceValue(func() error {
		err := <-done
		if err != nil {
			s.log.WarnContext(ctx, "mark freeze resuming, tried beside the post-hook", "backup_id", o.ref.BackupID, "err", err)
		}
		return err
	})
}

// finish ends a backup whose post-hook ran: its end recorded, then
// Resumed, then the lease released. A crash between two steps is finished
// by whoever handles the freeze next (a retried trigger, a takeover), from
// the recorded end.
func (s *Service) finish(ctx context.Context, o *op) error {
	end := *o.end
	if err := s.leases.End(ctx, end); err != nil {
		return err
	}
	if err := s.publishOnce(ctx, resumedOf(end, o.resumeHooks)); err != nil {
		return err
	}
	o.stopKeep()
	o.disarm()
	s.disarm(ctx, o.plan, "the resume did not use it")
	if err := o.hold.Release(context.WithoutCancel(ctx)); err != nil {
		s.log.WarnContext(ctx, "release freeze lease", "backup_id", o.ref.BackupID, "err", err)
	}
	o.hold = nil
	s.ops.remove(o)
	return nil
}

func resumedOf(end events.FreezeEnd, hooks []events.HookRun) *events.Resumed {
	return &events.Resumed{BackupRef: events.BackupRef{BackupID: end.BackupID, Workload: end.Workload}, ResumedAt: end.EndedAt, Reason: end.Reason,
		Succeeded: end.Succeeded, FrozenFor: end.FrozenFor, Hooks: hooks}
}

// resumeUnannounced undoes a freeze whose Quiesced could not be published
// (or whose record could not say frozen): nobody would snapshot or resume
// it. The backup ends failed.
func (s *Service) resumeUnannounced(ctx context.Context, o *op, cause error) error {
	s.log.ErrorContext(ctx, "cannot announce freeze, resuming now", "backup_id", o.ref.BackupID, "err", cause)
	return s.resumeHeld(ctx, o, events.ResumeAfterFailure, &events.BackupFailed{BackupRef: o.ref, Step: events.StepQuiesce,
		Reason: "the freeze could not be announced: " + cause.Error(), ResumePending: true})
}

// announceFailure says why a backup whose application is being resumed
// failed.
func (s *Service) announceFailure(ctx context.Context, ref events.BackupRef, why string) {
	if err := s.publishOnce(ctx, &events.BackupFailed{BackupRef: ref, Step: events.StepFreeze, Reason: why, ResumePending: true}); err != nil {
		s.log.ErrorContext(ctx, "announce the failure before resuming", "backup_id", ref.BackupID, "err", err)
	}
}

// failResume settles a post-hook that failed: retried with backoff while
// deliveries remain, then reported. Each report names the freeze's
// revision, so that a later failure (after the watchdog asked again) is a
// new event.
func (s *Service) failResume(ctx context.Context, o *op, err error) error {
	if d, ok := events.DeliveryOf(ctx); ok && !d.Last() {
		return err // retried with backoff
	}
	ref := o.ref
	s.log.ErrorContext(ctx, "post-hook failed for the last time: the application may still be frozen", "backup_id", ref.BackupID, "err", err)
	f := &events.BackupFailed{BackupRef: ref, Step: events.StepResume, Reason: "post-hook failed, application may still be frozen: " + err.Error()}
	id := events.DefaultID(f) + ".r" + strconv.FormatUint(o.hold.Revision(), 10)
	if _, _, perr := s.pub.Publish(ctx, f, events.WithID(id)); perr != nil {
		return perr
	}
	return nil
}

// lose ends this replica's part in a freeze whose lease it lost (taken
// over, or ended): it must not run a post-hook, which could thaw a later
// backup's freeze, but it ends its own lock sessions, whose locks no lease
// covers any more.
func (s *Service) lose(ctx context.Context, o *op, cause error) {
	s.log.WarnContext(ctx, "freeze lease lost: this replica no longer acts on the backup", "backup_id", o.ref.BackupID, "err", cause)
	// Another replica owns the resume now: an armed post-hook must not run
	// on this replica's word, nor by itself when this one exits.
	s.disarm(context.WithoutCancel(ctx), o.plan, "the freeze lease was lost")
	if err := s.sessions.Release(context.WithoutCancel(ctx), backupKey(o.ref)); err != nil && !errors.Is(err, session.ErrLost) {
		s.log.WarnContext(ctx, "release lock session", "backup_id", o.ref.BackupID, "err", err)
	}
	o.stopKeep()
	o.disarm()
	o.hold = nil
	s.ops.remove(o)
}

// deadlineGrace is how long after the freeze cap the holder waits for the
// watchdogs' unlock before it resumes by itself.
const deadlineGrace = events.FreezeClockTolerance

// armDeadline is the holder's own backstop for the freeze cap: should the
// watchdogs' unlock not come (the event stream electing a leader, every
// watchdog blind to the lease bucket), the holder resumes the application
// itself, through the same transition, a moment after the deadline.
func (s *Service) armDeadline(o *op) {
	hold := o.hold
	deadline := hold.Lease().Deadline
	o.deadline = time.AfterFunc(time.Until(deadline)+deadlineGrace, func() {
		ctx := s.life
		if !o.take(ctx) {
			return
		}
		defer o.give()
		if o.hold != hold || o.end != nil {
			return // ended, or lost, meanwhile
		}
		s.log.WarnContext(ctx, "frozen past its cap and no unlock came: the holder resumes it", "backup_id", o.ref.BackupID, "deadline", deadline)
		why := "frozen past its cap (deadline " + deadline.UTC().Format(time.RFC3339) + "); no unlock came, the holder resumed it"
		if err := s.resumeHeld(ctx, o, events.ResumeStaleLock, &events.BackupFailed{BackupRef: o.ref, Step: events.StepFreeze, Reason: why, ResumePending: true}); err != nil {
			s.log.ErrorContext(ctx, "resume past the cap", "backup_id", o.ref.BackupID, "err", err)
		}
	})
}

// startKeeping renews o's lease until it is released. If it is lost, the
// op is dropped. If NATS cannot be reached for half the stale period, this
// replica resumes the application by itself: it cannot hear the watchdogs,
// and at half the period no watchdog may yet have taken the freeze over.
func (s *Service) startKeeping(o *op) {
	ctx, stop := context.WithCancel(s.life)
	o.stopKeep = stop
	hold := o.hold
	if o.plan != nil {
		// Every stored write of the record vouches for the freeze a little
		// longer: the armed post-hooks may fire by themselves that much
		// longer too (fireLimit).
		arms := o.plan.arms
		hold.OnStored(func(l lease.Lease) { arms.extend(fireLimit(l.ValidUntil)) })
	}
	go func() {
		err := hold.Keep(ctx)
		if err == nil || !o.take(ctx) {
			return
		}
		defer o.give()
		if o.hold != hold {
			return // finished, or lost, meanwhile
		}
		switch {
		case errors.Is(err, lease.ErrLost):
			s.lose(ctx, o, err)
		case errors.Is(err, lease.ErrStalled):
			s.resumeStalled(ctx, o, err)
		}
	}()
}

// resumeStalled runs the post-hook of a freeze whose lease this replica
// cannot renew. The end is recorded, and Resumed published, by the next
// trigger once NATS answers again.
func (s *Service) resumeStalled(ctx context.Context, o *op, cause error) {
	ref := o.ref
	s.log.ErrorContext(ctx, "cannot reach NATS to keep the freeze: resuming now", "backup_id", ref.BackupID, "err", cause)
	_ = s.releaseSessions(ctx, ref)
	if o.plan == nil {
		return
	}
	if _, err := s.runAction(ctx, o.plan, o.plan.post, false); err != nil {
		s.log.ErrorContext(ctx, "post-hook of a stalled freeze failed", "backup_id", ref.BackupID, "err", err)
		return
	}
	frozenFor := time.Since(o.quiescedAt)
	o.end = &events.FreezeEnd{BackupID: ref.BackupID, Workload: ref.Workload, Epoch: o.hold.Epoch(), Reason: events.ResumeAfterFailure,
		Resumed: true, FrozenFor: events.Duration(frozenFor), EndedAt: time.Now().UTC()}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.finish(fctx, o); err != nil {
		s.log.WarnContext(ctx, "end of a stalled freeze not recorded yet", "backup_id", ref.BackupID, "err", err)
	}
}
