package schedule

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// QueueGroup is the NATS queue group the replicas of a cluster's scheduler
// answer requests in: each request goes to one of them.
const QueueGroup = "freezeframe-scheduler"

// Workloads looks up the workloads that backups are requested for.
type Workloads interface {
	// Annotations returns the workload's annotations, or an error wrapping
	// workload.ErrNotFound when it does not exist. Any other error means the
	// answer is unknown for now.
	Annotations(ctx context.Context, w events.Workload) (map[string]string, error)
}

// Service is one scheduler replica.
type Service struct {
	cfg       Config
	workloads Workloads
	pub       *events.Publisher
	log       *slog.Logger
	tracer    trace.Tracer
}

// New returns a scheduler for cfg.Cluster that checks requests against
// workloads and publishes through pub.
func New(cfg Config, workloads Workloads, pub *events.Publisher, log *slog.Logger) *Service {
	return &Service{
		cfg:       cfg.withDefaults(),
		workloads: workloads,
		pub:       pub,
		log:       log,
		tracer:    otel.GetTracerProvider().Tracer("github.com/freezeframe/freezeframe/services/scheduler/schedule"),
	}
}

// Run answers ad-hoc backup requests on nc until ctx ends, then drains: the
// requests already received are answered before it returns, within the
// configured shutdown timeout. It does not close nc.
func (s *Service) Run(ctx context.Context, nc *nats.Conn) error {
	subject := events.APISubject(s.cfg.Cluster)
	// Requests outlive ctx by the shutdown timeout: a client whose request
	// was received deserves its answer.
	handlerCtx := context.WithoutCancel(ctx)
	var (
		mu       sync.Mutex
		stopping bool
		inFlight sync.WaitGroup
	)
	sem := make(chan struct{}, s.cfg.MaxConcurrentRequests)
	sub, err := nc.QueueSubscribe(subject, QueueGroup, func(msg *nats.Msg) {
		mu.Lock()
		if stopping {
			mu.Unlock()
			return // the drain timed out; the client retries elsewhere
		}
		inFlight.Add(1)
		mu.Unlock()
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; inFlight.Done() }()
			s.serve(handlerCtx, msg)
		}()
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	// The server knows the subscription after a round trip. A connection
	// that is reconnecting re-subscribes by itself, so no answer is only
	// worth a warning.
	flushCtx, cancelFlush := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	if err := nc.FlushWithContext(flushCtx); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "subscription to backup requests not confirmed yet", "subject", subject, "err", err)
	} else {
		s.log.InfoContext(ctx, "serving backup requests", "subject", subject, "queue", QueueGroup)
	}
	cancelFlush()
	s.cfg.Runtime.Probe.Ready(nc)

	<-ctx.Done()
	s.cfg.Runtime.Probe.NotReady()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	closed := sub.StatusChanged(nats.SubscriptionClosed)
	if err := sub.Drain(); err != nil {
		s.log.Warn("drain backup requests", "err", err)
	} else {
		select {
		case <-closed:
		case <-shutdownCtx.Done():
			s.log.Warn("drain of backup requests timed out")
		}
	}
	mu.Lock()
	stopping = true
	mu.Unlock()
	done := make(chan struct{})
	go func() { inFlight.Wait(); close(done) }()
	select {
	case <-done:
	case <-shutdownCtx.Done():
		s.log.Warn("shutdown timeout over with requests in flight; their clients will retry")
	}
	return nil
}
