package freeze

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

// onStale is the watchdog's: a lease past its deadline, whose holder
// stopped renewing, or whose snapshot stopped progressing gets an
// UnlockRequested. Every replica's watchdog may fire; the event id names
// the lease revision judged, so the stream keeps one per revision, and a
// new attempt after the freeze changed (a failed post-hook, a takeover) is
// a new event.
func (s *Service) onStale(ctx context.Context, st lease.Stale) error {
	l := st.Lease
	u := &events.UnlockRequested{
		BackupRef: events.BackupRef{BackupID: l.BackupID, Workload: l.Workload},
		Reason:    st.Reason, RequestedBy: "watchdog/" + s.holder, Holder: l.Holder,
		HolderGone:     st.Cause == lease.CauseStopped,
		FreezeRevision: st.Revision,
	}
	s.log.WarnContext(ctx, "stale freeze lease, requesting unlock", "backup_id", l.BackupID, "workload", l.Workload.String(), "reason", st.Reason, "revision", st.Revision)
	_, dup, err := s.pub.Publish(ctx, u)
	if err == nil && !dup {
		// Every replica's watchdog fires; only the one whose event was
		// stored counts it.
		s.metrics.unlocks.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", string(st.Cause))))
	}
	return err
}

// unlock handles an UnlockRequested: the freeze ends now, and the backup
// fails (step freeze), announced once this replica owns the resume.
func (s *Service) unlock(ctx context.Context, u *events.UnlockRequested) error {
	reason, why := events.ResumeStaleLock, "unlock requested: "+u.Reason
	if isOperatorUnlock(u) {
		reason, why = events.ResumeOperator, "an operator forced the resume"
		if u.RequestedBy != "" {
			why += " (" + u.RequestedBy + ")"
		}
	}
	return s.resume(ctx, u.BackupRef, reason, u.HolderGone, &events.BackupFailed{BackupRef: u.BackupRef, Step: events.StepFreeze, Reason: why, ResumePending: true})
}

// isOperatorUnlock tells an operator's unlock (`freezeframe unlock`: reason
// "operator", requested by a user) from the watchdog's.
func isOperatorUnlock(p *events.UnlockRequested) bool {
	return p.Reason == events.ResumeOperator || strings.HasPrefix(p.RequestedBy, "operator")
}
