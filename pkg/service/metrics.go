package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Runtime is what a service is handed by whoever runs it: Main, `freezeframe
// up`, or a test. The zero value works: metrics go to the global provider and
// nobody asks for readiness.
type Runtime struct {
	// Meters records the service's metrics; nil: otel.GetMeterProvider().
	Meters metric.MeterProvider
	// Probe hears when the service is ready (see Probe.Ready); nil: nobody
	// asks.
	Probe *Probe
}

// Meter returns the meter a service creates its instruments with, named
// after its package (e.g. "github.com/freezeframe/freezeframe/services/hooker/freeze").
// Instrument names are the exact Prometheus names: NewMetrics adds no suffix.
func (c Common) Meter(name string) metric.Meter {
	if c.Runtime.Meters != nil {
		return c.Runtime.Meters.Meter(name)
	}
	return otel.GetMeterProvider().Meter(name)
}

// DurationBuckets are the histogram bounds, in seconds, of every freezeframe
// duration: from a one-millisecond hook to a freeze of ten minutes.
func DurationBuckets() []float64 {
	return []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
}

// Metrics is a meter provider whose instruments a Prometheus scrape reads,
// plus the Go runtime and process collectors.
type Metrics struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler
}

// NewMetrics returns a meter provider for serviceName with its own registry.
// Instrument names are exported as they are: name them
// "freezeframe_backups_total" or "freezeframe_freeze_duration_seconds", and
// the exporter appends no unit or _total suffix.
func NewMetrics(serviceName string) (*Metrics, error) {
	res, err := newResource(serviceName)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	if err := errors.Join(
		reg.Register(collectors.NewGoCollector()),
		reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
	); err != nil {
		return nil, fmt.Errorf("metrics registry: %w", err)
	}
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithoutSuffixes),
		otelprom.WithoutScopeInfo(),
	)
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	return &Metrics{
		provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res)),
		handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}, nil
}

// Provider is the meter provider to hand to services (Runtime.Meters).
func (m *Metrics) Provider() metric.MeterProvider { return m.provider }

// Handler serves the Prometheus exposition (/metrics).
func (m *Metrics) Handler() http.Handler { return m.handler }

// Shutdown stops the provider; callbacks are not called any more.
func (m *Metrics) Shutdown(ctx context.Context) error { return m.provider.Shutdown(ctx) }

// MetricConsumerPending is the gauge of messages a durable consumer has not
// been delivered yet, by consumer: its lag behind the stream.
const MetricConsumerPending = "freezeframe_consumer_pending_messages"

// ObserveConsumers reports the lag of the named durable consumers of stream
// as MetricConsumerPending, read with one consumer-info request per consumer
// when metrics are collected (a scrape), not on the event path. Unregister
// the result when the consumers stop.
func ObserveConsumers(c Common, js jetstream.JetStream, stream string, durables ...string) (metric.Registration, error) {
	m := c.Meter("github.com/freezeframe/freezeframe/pkg/service")
	g, err := m.Int64ObservableGauge(MetricConsumerPending, metric.WithUnit("{message}"),
		metric.WithDescription("messages of the event stream that the consumer has not been delivered yet"))
	if err != nil {
		return nil, fmt.Errorf("consumer lag gauge: %w", err)
	}
	return m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var errs []error
		for _, d := range durables {
			cons, err := js.Consumer(ctx, stream, d)
			if err != nil {
				errs = append(errs, fmt.Errorf("consumer %s: %w", d, err))
				continue
			}
			o.ObserveInt64(g, int64(cons.CachedInfo().NumPending), metric.WithAttributes(consumerAttr(d)))
		}
		return errors.Join(errs...)
	}, g)
}
