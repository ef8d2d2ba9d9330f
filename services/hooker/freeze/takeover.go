package freeze

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

// takeOver decides whether this replica resumes a backup it does not hold
// in memory, and if so takes the lease over (→ resuming) and returns its
// op, with the end filled in when the freeze had ended but was not
// finished. nil, nil: not this replica's to resume (another live replica
// holds it, or it ended).
func (s *Service) takeOver(ctx context.Context, ref events.BackupRef, holderGone bool) (*op, error) {
	o, ok := s.ops.takeTurn(ctx, ref)
	if !ok {
		return nil, ctx.Err()
	}
	defer o.give()
	if o.hold != nil {
		return o, nil // taken over meanwhile by another trigger
	}
	ok, err := s.takeLease(ctx, o, holderGone)
	if err != nil || !ok {
		s.ops.remove(o)
		return nil, err
	}
	return o, nil
}

func (s *Service) takeLease(ctx context.Context, o *op, holderGone bool) (bool, error) {
	ref := o.ref
	l, _, err := s.leases.Get(ctx, ref.Workload)
	switch {
	case errors.Is(err, lease.ErrNotHeld) || (err == nil && l.BackupID != ref.BackupID):
		return false, nil // ended (or never frozen)
	case err != nil:
		return false, err
	case l.Holder != s.holder && !holderGone:
		return false, nil // the live holder got this trigger too
	}
	hold, err := s.leases.TakeOver(ctx, ref.Workload, ref.BackupID, s.holder)
	if errors.Is(err, lease.ErrNotHeld) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("take over freeze lease: %w", err)
	}
	o.hold, o.takenOver = hold, true
	s.startKeeping(o)
	s.log.WarnContext(ctx, "taking over the resume of a backup frozen by another replica", "backup_id", ref.BackupID, "previous_holder", l.Holder, "epoch", hold.Epoch())
	// The holder may have died between recording the end (or publishing
	// Resumed) and releasing the lease: finish, do not resume again.
	if end, err := s.leases.Ended(ctx, ref); err == nil {
		o.end = &end
		return true, nil
	}
	if ev, err := s.lookup(ctx, events.KindResumed, ref); err == nil {
		if r, ok := ev.Payload.(*events.Resumed); ok {
			o.end = &events.FreezeEnd{BackupID: ref.BackupID, Workload: ref.Workload, Epoch: hold.Epoch(), Succeeded: r.Succeeded, Reason: r.Reason,
				Resumed: true, FrozenFor: r.FrozenFor, EndedAt: r.ResumedAt}
			return true, nil
		}
	}
	return true, nil
}

// rebuild makes the plan of a backup this replica did not freeze (it
// restarted, or another replica froze it) from the stored request, and
// reads from its Quiesced when it froze and whether its post-hook was armed.
func (s *Service) rebuild(ctx context.Context, ref events.BackupRef) (_ *plan, quiescedAt time.Time, armedInPod bool, _ error) {
	if s.lookup == nil {
		return nil, time.Time{}, false, errors.New("no event lookup to rebuild the resume plan")
	}
	reqEv, err := s.lookup(ctx, events.KindRequested, ref)
	if err != nil {
		return nil, time.Time{}, false, err
	}
	req, ok := reqEv.Payload.(*events.BackupRequested)
	if !ok {
		return nil, time.Time{}, false, fmt.Errorf("rebuild the resume plan: the stored request of backup %s is a %s", ref.BackupID, reqEv.Kind())
	}
	p, err := s.prepare(ctx, req, reqEv.CloudEvent.Source())
	if err != nil {
		return nil, time.Time{}, false, err
	}
	if q, err := s.lookup(ctx, events.KindQuiesced, ref); err == nil {
		if qp, ok := q.Payload.(*events.Quiesced); ok {
			quiescedAt, armedInPod = qp.QuiescedAt, qp.PostHookArmed
		}
	}
	return p, quiescedAt, armedInPod, nil
}
