package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Handler handles one event. Returning nil acks it; a Permanent error
// terminates it with the error as reason; any other error redelivers it with
// backoff. ctx carries the delivery (see DeliveryOf) and the trace.
type Handler func(ctx context.Context, ev Event) error

// ConsumerConfig describes one service's durable consumer.
type ConsumerConfig struct {
	// Stream is the stream name; DefaultStream when empty.
	Stream string
	// Durable is the consumer name, shared by the replicas of one service.
	Durable string
	// Kinds are the event kinds the service handles.
	Kinds []Kind
	// AckWait is how long a delivered message may go unacknowledged before it
	// is redelivered, e.g. after a crash. Heartbeats extend it while a
	// handler runs, so it bounds recovery time, not handler time. Default 10s.
	AckWait time.Duration
	// MaxDeliver bounds redeliveries; the last attempt is visible to the
	// handler (Delivery.Last) so it can report instead of vanishing. Default 10.
	MaxDeliver int
	// Concurrency is how many events are handled at once (and the consumer's
	// MaxAckPending). Default 1024.
	Concurrency int
	// ShutdownGrace is how long in-flight handlers may finish after Run's
	// context ends. Default 20s.
	ShutdownGrace time.Duration
	// NewOnly starts a newly created consumer at the end of the stream
	// instead of its beginning (an existing durable keeps its position).
	NewOnly bool
	// InactiveThreshold removes the consumer after this long without a
	// client, for consumers named after one replica. Zero keeps it.
	InactiveThreshold time.Duration
	// Owned says that this process owns the consumer and creates it when
	// missing (one named after a replica, a test's). A shared durable is
	// not owned: Setup creates it.
	Owned bool
	// RetryDelay gives the redelivery delay after the n-th failed attempt.
	// Default: 250ms doubling to 30s.
	RetryDelay func(attempt int) time.Duration
	// MaxEventSize is the largest message (payload and headers) handed to
	// the handler; a larger one is terminated unread, so that a hostile or
	// broken publisher cannot make every replica parse megabytes. Default
	// DefaultMaxEventSize (64 KiB), the publishers' default limit too.
	MaxEventSize int
	// Heartbeat is the idle heartbeat of the consumer's pull requests: a
	// pull request lost with a server (a node killed, a consumer leader
	// failing over) is noticed and re-issued after two missed heartbeats.
	// nats.go's default of 5s stalled a frozen application's snapshot for
	// seconds through a failover. Default 500ms.
	Heartbeat time.Duration
	// Meters records MetricEventsRejected; nil: otel.GetMeterProvider().
	Meters metric.MeterProvider
}

// MetricEventsRejected counts the messages a consumer terminated unread, by
// consumer and reason (too-large, subject-mismatch, forbidden-source,
// unknown-version, unknown-type, undecodable): a forged or broken publisher
// shows here before anyone reads the logs.
const MetricEventsRejected = "freezeframe_events_rejected_total"

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.AckWait == 0 {
		c.AckWait = 10 * time.Second
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 10
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1024
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 20 * time.Second
	}
	if c.MaxEventSize <= 0 {
		c.MaxEventSize = DefaultMaxEventSize
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 500 * time.Millisecond
	}
	if c.RetryDelay == nil {
		c.RetryDelay = ExponentialDelay(250*time.Millisecond, 30*time.Second)
	}
	if c.Meters == nil {
		c.Meters = otel.GetMeterProvider()
	}
	return c
}

// ExponentialDelay doubles from base for each attempt, capped at max.
func ExponentialDelay(base, max time.Duration) func(int) time.Duration {
	return func(attempt int) time.Duration {
		d := base
		for i := 1; i < attempt && d < max; i++ {
			d *= 2
		}
		return min(d, max)
	}
}

// Delivery describes the delivery being handled.
type Delivery struct {
	Attempt    int
	MaxDeliver int
	Subject    string
	Sequence   uint64
}

// Last reports whether this is the final attempt: a handler that fails now
// should report the failure as an event, since no retry will follow.
func (d Delivery) Last() bool { return d.MaxDeliver > 0 && d.Attempt >= d.MaxDeliver }

type deliveryKey struct{}

// DeliveryOf returns the delivery a handler's ctx belongs to.
func DeliveryOf(ctx context.Context) (Delivery, bool) {
	d, ok := ctx.Value(deliveryKey{}).(Delivery)
	return d, ok
}

// Consumer runs a handler over a durable pull consumer.
type Consumer struct {
	cfg      ConsumerConfig
	cons     jetstream.Consumer
	handler  Handler
	log      *slog.Logger
	tracer   trace.Tracer
	rejected metric.Int64Counter
}

// NewConsumer binds to the durable consumer described by cfg. A shared
// durable (see Durables) is created by Setup, not here: when it is missing
// the error wraps ErrNotSetUp. When it exists with other settings than cfg
// asks for (a test's short AckWait, a service's MaxDeliver), NewConsumer
// tries to update it; an identity that may not (see Permissions) keeps the
// settings Setup gave it, with a warning. A consumer cfg.Owned is created
// or updated here.
func NewConsumer(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig, h Handler, log *slog.Logger) (*Consumer, error) {
	cfg = cfg.withDefaults()
	cc, err := cfg.jetStreamConfig()
	if err != nil {
		return nil, err
	}
	log = log.With("consumer", cfg.Durable)
	rejected, err := cfg.Meters.Meter(instrumentationName).Int64Counter(MetricEventsRejected, metric.WithUnit("{message}"),
		metric.WithDescription("messages terminated unread: not a valid event, or from a source not allowed to emit its kind"))
	if err != nil {
		return nil, fmt.Errorf("new consumer %s: rejected counter: %w", cfg.Durable, err)
	}
	newConsumer := func(cons jetstream.Consumer) *Consumer {
		// Delivery.Last must count the attempts the server makes.
		if md := cons.CachedInfo().Config.MaxDeliver; md > 0 {
			cfg.MaxDeliver = md
		}
		return &Consumer{cfg: cfg, cons: cons, handler: h, log: log, tracer: otel.GetTracerProvider().Tracer(instrumentationName), rejected: rejected}
	}
	existing, err := js.Consumer(ctx, cfg.Stream, cfg.Durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound) && !cfg.Owned:
		return nil, fmt.Errorf("consumer %s on stream %s not found: %w", cfg.Durable, cfg.Stream, ErrNotSetUp)
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("stream %s not found: %w", cfg.Stream, ErrNotSetUp)
	case err == nil && sameConsumer(existing.CachedInfo().Config, cc):
		return newConsumer(existing), nil
	case err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, fmt.Errorf("consumer %s on %s: %w", cfg.Durable, cfg.Stream, err)
	}
	if existing != nil {
		// The deliver policy of a durable cannot change; keep its own.
		cc.DeliverPolicy = existing.CachedInfo().Config.DeliverPolicy
	}
	uctx, cancel := ctx, context.CancelFunc(func() {})
	if existing != nil && !cfg.Owned {
		// Refused by permissions, the request goes unanswered: do not
		// wait the whole JetStream timeout for it.
		uctx, cancel = context.WithTimeout(ctx, consumerUpdatePatience)
	}
	cons, err := js.CreateOrUpdateConsumer(uctx, cfg.Stream, cc)
	cancel()
	if err != nil {
		if existing != nil && !cfg.Owned && ctx.Err() == nil {
			got := existing.CachedInfo().Config
			log.WarnContext(ctx, "consumer settings differ from this service's and could not be updated: keeping the consumer's; run `freezeframe setup` with the same settings",
				"ack_wait", got.AckWait, "want_ack_wait", cc.AckWait, "max_deliver", got.MaxDeliver, "want_max_deliver", cc.MaxDeliver,
				"max_ack_pending", got.MaxAckPending, "want_max_ack_pending", cc.MaxAckPending, "filter_subjects", got.FilterSubjects, "err", err)
			return newConsumer(existing), nil
		}
		return nil, fmt.Errorf("new consumer %s on %s: %w", cfg.Durable, cfg.Stream, err)
	}
	return newConsumer(cons), nil
}

// consumerUpdatePatience bounds the attempt to update a shared durable.
const consumerUpdatePatience = 3 * time.Second

// EnsureConsumer creates or updates the durable consumer cfg describes,
// keeping the deliver policy of one that exists. Setup calls it with admin
// rights.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig) error {
	cfg = cfg.withDefaults()
	cc, err := cfg.jetStreamConfig()
	if err != nil {
		return err
	}
	if existing, err := js.Consumer(ctx, cfg.Stream, cfg.Durable); err == nil {
		cc.DeliverPolicy = existing.CachedInfo().Config.DeliverPolicy
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, cc); err != nil {
		return fmt.Errorf("consumer %s on %s: %w", cfg.Durable, cfg.Stream, err)
	}
	return nil
}

// jetStreamConfig is the server's configuration of the consumer.
func (cfg ConsumerConfig) jetStreamConfig() (jetstream.ConsumerConfig, error) {
	if cfg.Durable == "" || len(cfg.Kinds) == 0 {
		return jetstream.ConsumerConfig{}, errors.New("new consumer: durable name and at least one kind required")
	}
	subjects, err := Filter{Kinds: cfg.Kinds}.Subjects()
	if err != nil {
		return jetstream.ConsumerConfig{}, fmt.Errorf("new consumer %s: %w", cfg.Durable, err)
	}
	cc := jetstream.ConsumerConfig{
		Durable:           cfg.Durable,
		Description:       "freezeframe " + cfg.Durable,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           cfg.AckWait,
		MaxDeliver:        cfg.MaxDeliver,
		MaxAckPending:     cfg.Concurrency,
		FilterSubjects:    subjects,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: cfg.InactiveThreshold,
	}
	if cfg.NewOnly {
		cc.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	return cc, nil
}

// sameConsumer reports whether the existing consumer serves as want: the
// same events, redelivery and ack wait, and room for at least as many
// events in flight (replicas of a service share one durable).
func sameConsumer(got, want jetstream.ConsumerConfig) bool {
	return slices.Equal(got.FilterSubjects, want.FilterSubjects) && got.AckWait == want.AckWait &&
		got.MaxDeliver == want.MaxDeliver && got.MaxAckPending >= want.MaxAckPending &&
		got.InactiveThreshold == want.InactiveThreshold && got.AckPolicy == want.AckPolicy
}

// Run handles events until ctx ends, then stops fetching and gives in-flight
// handlers ShutdownGrace to finish. Anything unsettled is redelivered later,
// to this or another replica.
func (c *Consumer) Run(ctx context.Context) error {
	// Handlers outlive ctx by the grace period: cutting a resume short at
	// shutdown would leave an application frozen until redelivery.
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	w := &workers{max: c.cfg.Concurrency, work: make(chan jetstream.Msg), exited: make(chan struct{}, 1), stop: make(chan struct{}),
		handle: func(msg jetstream.Msg) { c.handle(handlerCtx, msg) }}
	cc, err := c.cons.Consume(w.dispatch,
		jetstream.PullMaxMessages(min(c.cfg.Concurrency, 512)),
		jetstream.PullHeartbeat(c.cfg.Heartbeat),
		// A heartbeat must be at most half the pull request's expiry.
		jetstream.PullExpiry(max(10*c.cfg.Heartbeat, 5*time.Second)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) || ctx.Err() == nil {
				c.log.WarnContext(ctx, "consume", "err", err)
			}
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", c.cfg.Durable, err)
	}
	<-ctx.Done()
	cc.Stop()
	<-cc.Closed()
	w.shutdown() // idle workers leave; a message still being dispatched is redelivered
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(c.cfg.ShutdownGrace):
		c.log.Warn("shutdown grace over, cancelling in-flight handlers; their events will be redelivered")
		cancelHandlers()
		<-done
	}
	return nil
}

// workers run handlers, at most max at once. A worker stays for the next
// message while messages keep coming, and leaves after workerIdle without
// one: a hop then costs a hand-over to a running goroutine (whose stack has
// already grown to what handlers need), not a new goroutine per message.
type workers struct {
	max    int
	handle func(jetstream.Msg)
	work   chan jetstream.Msg // unbuffered: a send succeeds only to an idle worker
	exited chan struct{}      // a worker left (coalesced)
	stop   chan struct{}      // closed at shutdown

	mu      sync.Mutex
	live    int  // workers running
	stopped bool // no worker starts after shutdown
	wg      sync.WaitGroup
}

// shutdown stops new workers and tells idle ones to leave; wg then counts
// the handlers still running.
func (w *workers) shutdown() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	close(w.stop)
}

const workerIdle = 5 * time.Second

// dispatch hands msg to an idle worker, or starts one, or waits for a
// worker to be free when max are busy. The jetstream consume callback calls
// it from one goroutine at a time.
func (w *workers) dispatch(msg jetstream.Msg) {
	for {
		select {
		case w.work <- msg:
			return
		default:
		}
		w.mu.Lock()
		if w.stopped {
			w.mu.Unlock()
			return // not settled: redelivered after AckWait
		}
		if w.live < w.max {
			w.live++
			w.wg.Add(1)
			w.mu.Unlock()
			go w.run(msg)
			return
		}
		w.mu.Unlock()
		select {
		case w.work <- msg:
			return
		case <-w.exited: // room for a new worker: look again
		case <-w.stop:
			return
		}
	}
}

func (w *workers) run(msg jetstream.Msg) {
	defer w.wg.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		w.handle(msg)
		idle.Reset(workerIdle)
		select {
		case msg = <-w.work:
			continue
		case <-idle.C:
		case <-w.stop:
		}
		w.mu.Lock()
		w.live--
		w.mu.Unlock()
		select {
		case w.exited <- struct{}{}:
		default:
		}
		return
	}
}

func (c *Consumer) handle(ctx context.Context, msg jetstream.Msg) {
	delivery := Delivery{Subject: msg.Subject(), MaxDeliver: c.cfg.MaxDeliver, Attempt: 1}
	if md, err := msg.Metadata(); err == nil {
		delivery.Attempt = int(md.NumDelivered)
		delivery.Sequence = md.Sequence.Stream
	}
	ctx = traceContext.Extract(ctx, headerCarrier(msg.Headers()))
	ev, err := c.decode(msg)
	if err != nil {
		// Never handed to a handler, never redelivered: the same bytes
		// cannot become a valid event. The reason is kept by the server
		// (the MSG_TERMINATED advisory) as well as logged here.
		what := "terminating message that is not a valid event"
		if errors.Is(err, ErrForbiddenSource) {
			what = "terminating event from a source not allowed to emit it"
		}
		reason := rejectReason(err)
		c.log.WarnContext(ctx, what, "subject", truncate(msg.Subject(), 512), "seq", delivery.Sequence, "attempt", delivery.Attempt, "reason", reason, "err", err)
		c.rejected.Add(ctx, 1, metric.WithAttributes(attribute.String("consumer", c.cfg.Durable), attribute.String("reason", reason)))
		c.settle(ctx, msg, func() error { return msg.TermWithReason(truncate(err.Error(), 512)) })
		return
	}
	// Built only when something is logged: attributes are encoded eagerly.
	log := func() *slog.Logger {
		return c.log.With("backup_id", ev.BackupID(), "event", ev.Kind(), "workload", ev.Workload().String())
	}
	ctx, span := c.tracer.Start(ctx, "process "+string(ev.Kind()), trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	if span.IsRecording() { // attributes cost allocations on every hop; none when not traced
		span.SetAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.consumer.group.name", c.cfg.Durable),
			attribute.String("cloudevents.event_id", ev.CloudEvent.ID()),
			attribute.String("freezeframe.backup_id", ev.BackupID()),
			attribute.Int("messaging.nats.delivery_attempt", delivery.Attempt),
		)
	}
	ctx = context.WithValue(ctx, deliveryKey{}, delivery)

	stopBeat := c.heartbeat(ctx, msg)
	err = c.handler(ctx, ev)
	stopBeat()

	switch {
	case err == nil:
		c.settle(ctx, msg, func() error { return msg.DoubleAck(ctx) })
	case IsPermanent(err):
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		log().WarnContext(ctx, "terminating event that cannot succeed", "err", err)
		c.settle(ctx, msg, func() error { return msg.TermWithReason(truncate(err.Error(), 512)) })
	default:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		if delivery.Last() {
			log().ErrorContext(ctx, "giving up on event after last delivery", "attempt", delivery.Attempt, "err", err)
			c.settle(ctx, msg, func() error { return msg.TermWithReason(truncate("max deliveries: "+err.Error(), 512)) })
			return
		}
		delay := c.cfg.RetryDelay(delivery.Attempt)
		log().WarnContext(ctx, "handler failed, redelivering", "attempt", delivery.Attempt, "retry_in", delay, "err", err)
		c.settle(ctx, msg, func() error { return msg.NakWithDelay(delay) })
	}
}

// decode checks a delivered message's size, then decodes it against its
// subject.
func (c *Consumer) decode(msg jetstream.Msg) (Event, error) {
	if n := wireSize(msg.Headers(), msg.Data()); n > c.cfg.MaxEventSize {
		return Event{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, c.cfg.MaxEventSize)
	}
	return DecodeMessage(msg.Subject(), msg.Headers(), msg.Data())
}

// rejectReason names the class of a decode error, for logs and alerts.
func rejectReason(err error) string {
	switch {
	case errors.Is(err, ErrTooLarge):
		return "too-large"
	case errors.Is(err, ErrForbiddenSource):
		return "forbidden-source"
	case errors.Is(err, ErrSubjectMismatch), errors.Is(err, ErrBadSubject):
		return "subject-mismatch"
	case errors.Is(err, ErrUnknownVersion):
		return "unknown-version"
	case errors.Is(err, ErrUnknownType):
		return "unknown-type"
	}
	return "undecodable"
}

// heartbeat tells the server the message is still being worked on, so a
// handler running longer than AckWait is not redelivered to someone else.
// Most handlers finish long before the first beat: a timer costs them less
// than a goroutine with a ticker.
func (c *Consumer) heartbeat(ctx context.Context, msg jetstream.Msg) (stop func()) {
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	beat := func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if err := msg.InProgress(); err != nil {
			c.log.WarnContext(ctx, "in-progress heartbeat", "err", err)
		}
		t.Reset(c.cfg.AckWait / 3)
	}
	mu.Lock()
	t = time.AfterFunc(c.cfg.AckWait/3, beat)
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

func (c *Consumer) settle(ctx context.Context, msg jetstream.Msg, f func() error) {
	if err := f(); err != nil {
		// The server will redeliver after AckWait; handlers are idempotent.
		c.log.WarnContext(ctx, "settle message", "subject", msg.Subject(), "err", err)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
