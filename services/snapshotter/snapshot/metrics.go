package snapshot

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/freezeframe/freezeframe/pkg/service"
)

// Metric names, exactly as Prometheus shows them.
const (
	// MetricCutDuration: from the first create call to the last cut seen, by
	// mode (volume, group): the storage's share of each freeze.
	MetricCutDuration = "freezeframe_snapshot_cut_duration_seconds"
	// MetricReadyDuration: from the last cut to the last snapshot ready to
	// use, by mode; nothing is frozen meanwhile.
	MetricReadyDuration = "freezeframe_snapshot_ready_duration_seconds"
	// MetricPruned: backups whose snapshots retention deleted.
	MetricPruned = "freezeframe_snapshots_pruned_total"
)

const instrumentationName = "github.com/freezeframe/freezeframe/services/snapshotter/snapshot"

type metrics struct {
	cut, ready metric.Float64Histogram
	pruned     metric.Int64Counter
	tracer     trace.Tracer
}

func newMetrics(c service.Common) metrics {
	meter := c.Meter(instrumentationName)
	m := metrics{tracer: otel.GetTracerProvider().Tracer(instrumentationName)}
	var err error
	if m.cut, err = meter.Float64Histogram(MetricCutDuration, metric.WithUnit("s"),
		metric.WithDescription("from the first snapshot create call to the last cut, by mode: the storage's share of a freeze"),
		metric.WithExplicitBucketBoundaries(service.DurationBuckets()...)); err != nil {
		otel.Handle(err)
	}
	if m.ready, err = meter.Float64Histogram(MetricReadyDuration, metric.WithUnit("s"),
		metric.WithDescription("from the last cut to the last snapshot ready to use, by mode"),
		metric.WithExplicitBucketBoundaries(service.DurationBuckets()...)); err != nil {
		otel.Handle(err)
	}
	if m.pruned, err = meter.Int64Counter(MetricPruned,
		metric.WithDescription("backups whose snapshots retention deleted")); err != nil {
		otel.Handle(err)
	}
	return m
}

func (m metrics) recordCut(ctx context.Context, mode string, d time.Duration) {
	if m.cut != nil {
		m.cut.Record(ctx, d.Seconds(), metric.WithAttributes(attribute.String("mode", mode)))
	}
}

func (m metrics) recordReady(ctx context.Context, mode string, d time.Duration) {
	if m.ready != nil {
		m.ready.Record(ctx, d.Seconds(), metric.WithAttributes(attribute.String("mode", mode)))
	}
}

func (m metrics) recordPruned(ctx context.Context, n int) {
	if m.pruned != nil && n > 0 {
		m.pruned.Add(ctx, int64(n))
	}
}
