package notify

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/service"
)

// MetricBackups counts backups by how they ended: result "succeeded" or
// "failed", and for a failure the step that failed. The notifier counts them
// because it is the one service that sees the end of every backup, whoever
// published it (the scheduler refuses requests, the hooker and the
// snapshotter end the others). A failure is counted at its terminal event; a
// success once it is both resumed and ready to restore, by the handler of
// whichever of Resumed and SnapshotReady comes second. Each event is counted
// at its first delivery only, so a notification retried after a Slack outage
// does not count it again.
const MetricBackups = "freezeframe_backups_total"

type metrics struct {
	backups metric.Int64Counter
}

func newMetrics(c service.Common) metrics {
	var m metrics
	var err error
	if m.backups, err = c.Meter("github.com/freezeframe/freezeframe/services/notifier/notify").Int64Counter(MetricBackups,
		metric.WithDescription("backups by result (succeeded, failed) and failed step")); err != nil {
		otel.Handle(err)
	}
	// Zero from the start, so that a rate over the first success is right.
	m.backups.Add(context.Background(), 0, metric.WithAttributes(attribute.String("result", "succeeded")))
	return m
}

// countBackup counts the backup that ev ends, if it ends one.
func (s *Service) countBackup(ctx context.Context, ev events.Event) {
	if d, ok := events.DeliveryOf(ctx); ok && d.Attempt > 1 {
		return
	}
	if events.RestoreIDOf(ev) != "" {
		return // a restore is not a backup
	}
	switch p := ev.Payload.(type) {
	case *events.SnapshotReady:
		if s.completes(ctx, ev, events.KindResumed) {
			s.metrics.backups.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "succeeded")))
		}
		return
	case *events.Resumed:
		if p.Succeeded {
			if s.completes(ctx, ev, events.KindSnapshotReady) {
				s.metrics.backups.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "succeeded")))
			}
			return
		}
	}
	o, ok := OutcomeOf(ev)
	if !ok || o.Succeeded {
		return
	}
	step := o.Step
	if step == "" {
		step = s.failedStep(ctx, ev, o)
	}
	s.metrics.backups.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "failed"), attribute.String("step", step)))
}

// completes reports whether ev (a successful Resumed, or SnapshotReady)
// completes its backup: the other one, kind, is stored already, and ev is the
// later of the two. Both handlers compare the same two events, so exactly
// one of them counts the backup, whichever order they run in.
func (s *Service) completes(ctx context.Context, ev events.Event, kind events.Kind) bool {
	if s.history == nil {
		return false
	}
	other, err := s.history.Lookup(ctx, kind, events.BackupRef{BackupID: ev.BackupID(), Workload: ev.Workload()})
	if err != nil {
		return false // not there yet: its handler counts
	}
	if r, ok := other.Payload.(*events.Resumed); ok && !r.Succeeded {
		return false // a failed backup, counted at its Resumed
	}
	if ev.Time().Equal(other.Time()) {
		return ev.Kind() == events.KindSnapshotReady
	}
	return ev.Time().After(other.Time())
}

func (s *Service) failedStep(ctx context.Context, ev events.Event, o Outcome) string {
	if s.history != nil {
		if f, err := s.history.Lookup(ctx, events.KindFailed, events.BackupRef{BackupID: ev.BackupID(), Workload: ev.Workload()}); err == nil {
			if p, ok := f.Payload.(*events.BackupFailed); ok {
				return p.Step
			}
		}
	}
	switch o.Reason {
	case events.ResumeAfterPrehookFailed:
		return events.StepQuiesce
	case events.ResumeStaleLock, events.ResumeOperator:
		return events.StepFreeze
	}
	return events.StepSnapshot
}
