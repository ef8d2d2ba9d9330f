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
// because it is the one service that sees the terminal event of every
// backup, whoever published it (the scheduler refuses requests, the hooker
// ends the others); each terminal event is counted at its first delivery, so
// a redelivery after a failed notification does not count it again.
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

// countBackup counts the backup a terminal event ends. The step of a failed
// Resumed is that of the backup's last BackupFailed (looked up), else what
// the resume reason implies.
func (s *Service) countBackup(ctx context.Context, ev events.Event) {
	if d, ok := events.DeliveryOf(ctx); ok && d.Attempt > 1 {
		return
	}
	o, ok := OutcomeOf(ev)
	if !ok {
		return
	}
	attrs := []attribute.KeyValue{attribute.String("result", o.Result())}
	if !o.Succeeded {
		step := o.Step
		if step == "" {
			step = s.failedStep(ctx, ev, o)
		}
		attrs = append(attrs, attribute.String("step", step))
	}
	s.metrics.backups.Add(ctx, 1, metric.WithAttributes(attrs...))
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
