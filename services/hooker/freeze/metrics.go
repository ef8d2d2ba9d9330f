package freeze

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

// Metric names, exactly as Prometheus shows them (service.NewMetrics adds no
// suffix).
const (
	// MetricFreezeDuration: from the end of the pre-hook to the start of the
	// post-hook, once per resumed backup.
	MetricFreezeDuration = "freezeframe_freeze_duration_seconds"
	// MetricHookDuration: one exec of one hook phase, by action
	// (backupPrehook, backupPosthook) and phase (its name in the blueprint).
	MetricHookDuration = "freezeframe_hook_duration_seconds"
	// MetricWatchdogUnlocks: unlocks the lease watchdog requested, by reason
	// (deadline, stopped-renewing); counted once across replicas.
	MetricWatchdogUnlocks = "freezeframe_watchdog_unlocks_total"
	// MetricFrozenApplications: workloads holding a freeze lease now
	// (freezing, frozen or resuming). Every replica reports the whole
	// bucket: aggregate with max, not sum.
	MetricFrozenApplications = "freezeframe_frozen_applications"
	// MetricLongestCurrentFreeze: how long the oldest current lease has been
	// held; 0 when nothing is frozen. Aggregate with max.
	MetricLongestCurrentFreeze = "freezeframe_longest_current_freeze_seconds"
	// MetricArmedPosthooks: post-hook execs opened before a freeze, by
	// outcome: armed, fallback (could not arm: an ordinary exec at the
	// resume), lost (ended before the resume: fired, or the stream broke),
	// disarmed (another replica owns the resume).
	MetricArmedPosthooks = "freezeframe_armed_posthooks_total"
)

const instrumentationName = "github.com/freezeframe/freezeframe/services/hooker/freeze"

type metrics struct {
	meter   metric.Meter
	freeze  metric.Float64Histogram
	hook    metric.Float64Histogram
	unlocks metric.Int64Counter
	arms    metric.Int64Counter
	// admissionWait: admission.go.
	admissionWait metric.Float64Histogram
}

func newMetrics(c service.Common) metrics {
	m := metrics{meter: c.Meter(instrumentationName)}
	m.admissionWait = newAdmissionWaitHistogram(m.meter)
	var err error
	if m.freeze, err = m.meter.Float64Histogram(MetricFreezeDuration, metric.WithUnit("s"),
		metric.WithDescription("how long applications stayed frozen: end of the pre-hook to start of the post-hook"),
		metric.WithExplicitBucketBoundaries(service.DurationBuckets()...)); err != nil {
		otel.Handle(err)
	}
	if m.hook, err = m.meter.Float64Histogram(MetricHookDuration, metric.WithUnit("s"),
		metric.WithDescription("duration of one hook exec, by blueprint action and phase"),
		metric.WithExplicitBucketBoundaries(service.DurationBuckets()...)); err != nil {
		otel.Handle(err)
	}
	if m.unlocks, err = m.meter.Int64Counter(MetricWatchdogUnlocks,
		metric.WithDescription("unlocks requested by the freeze lease watchdog, by reason")); err != nil {
		otel.Handle(err)
	}
	if m.arms, err = m.meter.Int64Counter(MetricArmedPosthooks,
		metric.WithDescription("post-hook execs armed before a freeze, by outcome (armed, fallback, lost, disarmed)")); err != nil {
		otel.Handle(err)
	}
	for _, o := range []string{armArmed, armFallback, armLost, armDisarmed} {
		m.arms.Add(context.Background(), 0, metric.WithAttributes(attribute.String("outcome", o)))
	}
	// Zero from the start, so that rules see the first unlock as an increase.
	for _, c := range []lease.Cause{lease.CauseDeadline, lease.CauseStopped, lease.CauseSnapshotStalled} {
		m.unlocks.Add(context.Background(), 0, metric.WithAttributes(attribute.String("reason", string(c))))
	}
	return m
}

func (m metrics) recordHook(ctx context.Context, action, phase string, d time.Duration) {
	m.hook.Record(ctx, d.Seconds(), metric.WithAttributes(attribute.String("action", action), attribute.String("phase", phase)))
}

// observeLeases reports the freeze gauges from the lease bucket when
// metrics are collected: the view of every lease, whichever replica holds it,
// so that a freeze whose holder died still shows.
func (s *Service) observeLeases() (metric.Registration, error) {
	frozen, err := s.metrics.meter.Int64ObservableGauge(MetricFrozenApplications, metric.WithUnit("{application}"),
		metric.WithDescription("workloads holding a freeze lease (freezing, frozen or resuming)"))
	if err != nil {
		return nil, err
	}
	longest, err := s.metrics.meter.Float64ObservableGauge(MetricLongestCurrentFreeze, metric.WithUnit("s"),
		metric.WithDescription("how long the oldest current freeze lease has been held"))
	if err != nil {
		return nil, err
	}
	return s.metrics.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		leases, err := s.leases.List(ctx)
		if err != nil && len(leases) == 0 {
			return err
		}
		var oldest time.Duration
		for _, l := range leases {
			oldest = max(oldest, time.Since(l.AcquiredAt))
		}
		o.ObserveInt64(frozen, int64(len(leases)))
		o.ObserveFloat64(longest, oldest.Seconds())
		return err
	}, frozen, longest)
}
