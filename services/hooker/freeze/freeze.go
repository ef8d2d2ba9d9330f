package freeze

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

// freeze handles a BackupRequested from source: requested → freezing →
// frozen, or an end that froze nothing.
func (s *Service) freeze(ctx context.Context, req *events.BackupRequested, source string) error {
	log := s.log.With("backup_id", req.BackupID, "workload", req.Workload.String())
	o, ok := s.ops.takeTurn(ctx, req.BackupRef)
	if !ok {
		return ctx.Err()
	}
	defer o.give()
	if o.hold != nil || o.end != nil {
		return nil // a duplicate delivery of a request this replica has in hand
	}
	keepOp := false
	defer func() {
		if !keepOp {
			s.ops.remove(o)
		}
	}()

	p, err := s.prepare(ctx, req, source)
	if err != nil {
		return s.failBeforeFreeze(ctx, req.BackupRef, events.StepResolve, err)
	}
	// Before the wait for admission and the freeze, counted in neither:
	// open the post-hook's execs, so that the resume is one write on an
	// open stream. They may not fire by themselves (limit 0) until the
	// lease vouches for a freeze.
	s.armPostHook(ctx, p, 0)
	defer func() {
		if !keepOp {
			s.disarm(context.WithoutCancel(ctx), p, "the freeze did not start")
		}
	}()
	if err := s.admit(ctx, o, p); err != nil { // admission.go: nothing frozen or held while waiting
		return err
	}
	now := time.Now()
	hold, err := s.leases.Acquire(ctx, lease.Lease{BackupID: req.BackupID, Workload: req.Workload, Holder: s.holder, AcquiredAt: now, Deadline: now.Add(p.maxFreeze)})
	var held *lease.HeldError
	switch {
	case errors.Is(err, lease.ErrEnded):
		// Redelivered, replayed or forged after the backup ended: freezing
		// again would leave the application frozen with nobody to resume it.
		log.WarnContext(ctx, "request of a backup that has ended: not freezing again", "err", err)
		return events.Permanent(err)
	case errors.As(err, &held) && held.Lease.BackupID == req.BackupID:
		return nil // another replica has this very backup in hand
	case errors.As(err, &held):
		// Never two freezes of one workload: wait (redelivery with backoff),
		// and say why on the last attempt.
		return s.failBeforeFreeze(ctx, req.BackupRef, events.StepQuiesce, err)
	case err != nil:
		return s.failBeforeFreeze(ctx, req.BackupRef, events.StepQuiesce, fmt.Errorf("take freeze lease: %w", err))
	}
	keepOp = true
	o.plan, o.hold = p, hold
	s.startKeeping(o) // from here on every stored write moves the arms' fire limit
	p.arms.extend(fireLimit(hold.ValidUntil()))
	if l := hold.Lease(); !l.AcquiredAt.Equal(now) {
		// This replica held the lease before a restart.
		return s.recoverRestartedFreeze(ctx, o, l, log)
	}

	// freezing
	log.InfoContext(ctx, "freezing", "blueprint", p.blueprint, "max_freeze", p.maxFreeze, "epoch", hold.Epoch(), "post_hook_armed", p.arms.armed())
	hooks, err := s.runAction(ctx, p, p.pre, true)
	o.quiescedAt = time.Now()
	if err != nil {
		// Part of the pre-hook may have frozen something: freezing →
		// resuming, with the failure announced first.
		log.WarnContext(ctx, "pre-hook failed", "err", err)
		return s.resumeHeld(ctx, o, events.ResumeAfterPrehookFailed, &events.BackupFailed{BackupRef: req.BackupRef, Step: events.StepQuiesce, Reason: err.Error(), ResumePending: true})
	}
	if lost := p.arms.lost(); lost != nil {
		// An armed post-hook ended during the pre-hook (its pod restarted,
		// its stream broke): it may have run, so the application may not be
		// frozen. Nothing is announced as quiesced; resume at once.
		log.WarnContext(ctx, "armed post-hook lost during the pre-hook: resuming without a snapshot", "err", redactedErr(lost, p.secrets))
		return s.resumeHeld(ctx, o, events.ResumeAfterFailure, &events.BackupFailed{BackupRef: req.BackupRef, Step: events.StepFreeze,
			Reason: armsLostReason(lost, p.secrets), ResumePending: true})
	}

	// freezing → frozen, while Quiesced goes out: a Quiesced at this epoch
	// exists only once the pre-hook succeeded, so the snapshotter takes
	// freezing at its epoch as frozen, and the write costs the freeze no
	// round trip. The turn is held until it is done, so no resume can
	// overtake it.
	// Neither may outlast what the record vouches for: a bucket or stream
	// electing its leader must not hold the application frozen, and past
	// ValidUntil no snapshotter cuts on this freeze's word anyway.
	marked := make(chan error, 1)
	go func() {
		mctx, cancel := context.WithDeadline(ctx, hold.ValidUntil().Add(events.FreezeClockTolerance))
		defer cancel()
		marked <- hold.SetState(mctx, lease.StateFrozen)
	}()
	q := &events.Quiesced{BackupRef: req.BackupRef, QuiescedAt: o.quiescedAt, FreezeDeadline: hold.Lease().Deadline, Holder: s.holder, Blueprint: p.blueprint,
		Hooks: hooks, SnapshotClass: p.class, SnapshotsToKeep: p.keep, RetentionIgnored: p.retentionIgnored, Volumes: p.volumes, FreezeEpoch: hold.Epoch(),
		PostHookArmed: p.arms.armed()}
	q.AdmissionWait = events.Duration(o.slot.Load().Waited())
	qctx, cancel := context.WithDeadline(ctx, q.FreezeDeadline)
	perr := s.publishOnce(qctx, q)
	cancel()
	if err := <-marked; err != nil {
		if errors.Is(err, lease.ErrLost) {
			s.lose(ctx, o, err)
			return nil
		}
		return s.resumeUnannounced(ctx, o, fmt.Errorf("mark freeze frozen: %w", err))
	}
	if perr != nil {
		// Nobody will snapshot what nobody heard of: unfreeze now.
		return s.resumeUnannounced(ctx, o, perr)
	}
	s.armDeadline(o)
	log.InfoContext(ctx, "quiesced", "hooks", len(hooks), "freeze_deadline", q.FreezeDeadline)
	return nil
}

// recoverRestartedFreeze handles a request this replica had started before
// it restarted (same replica name, lease still held): a freeze announced
// goes on; one whose pre-hook may have been cut short is undone.
func (s *Service) recoverRestartedFreeze(ctx context.Context, o *op, l lease.Lease, log *slog.Logger) error {
	ref := o.ref
	if l.State == lease.StateFrozen {
		if q, err := s.lookup(ctx, events.KindQuiesced, ref); err == nil {
			if qp, ok := q.Payload.(*events.Quiesced); ok && qp.FreezeEpoch == o.hold.Epoch() {
				o.quiescedAt = qp.QuiescedAt
				// The previous process's streams died with it: what was bound
				// to them is gone, as after a takeover.
				o.takenOver, o.armedInPod = true, qp.PostHookArmed
				s.armDeadline(o)
				return nil // announced: the pipeline goes on, the resume comes as a trigger
			}
		}
	}
	log.WarnContext(ctx, "restarted during this backup's freeze; resuming without a snapshot", "lease_state", l.State)
	return s.resumeHeld(ctx, o, events.ResumeAfterFailure, &events.BackupFailed{BackupRef: ref, Step: events.StepQuiesce,
		Reason: "hooker " + s.holder + " restarted while freezing; what the pre-hook froze is undone by the post-hook", ResumePending: true})
}

// failBeforeFreeze reports a failure that froze nothing. Transient errors
// are retried, except on the last delivery, which ends the backup.
func (s *Service) failBeforeFreeze(ctx context.Context, ref events.BackupRef, step string, err error) error {
	if d, ok := events.DeliveryOf(ctx); !events.IsPermanent(err) && ok && !d.Last() {
		return err
	}
	s.log.WarnContext(ctx, "backup failed before freezing", "backup_id", ref.BackupID, "step", step, "err", err)
	// Ended before announced: a replay of the request finds it ended.
	if rerr := s.leases.End(ctx, events.FreezeEnd{BackupID: ref.BackupID, Workload: ref.Workload, Reason: step + ": " + err.Error()}); rerr != nil {
		return rerr
	}
	return s.publishOnce(ctx, &events.BackupFailed{BackupRef: ref, Step: step, Reason: err.Error(), ResumePending: false})
}
