package events

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Publisher publishes backup events onto the stream.
type Publisher struct {
	js      jetstream.JetStream
	source  string
	tracer  trace.Tracer
	maxSize int
}

// PublisherOption adjusts a Publisher.
type PublisherOption func(*Publisher)

// WithMaxEventSize sets the largest event the publisher sends, headers
// included (default DefaultMaxEventSize). Keep it at or below the consumers'
// ConsumerConfig.MaxEventSize: they terminate anything larger unread.
func WithMaxEventSize(n int) PublisherOption {
	return func(p *Publisher) {
		if n > 0 {
			p.maxSize = n
		}
	}
}

// NewPublisher returns a publisher whose events name source (e.g.
// "/freezeframe/hooker", Role.Source) as their CloudEvents source. It
// publishes only the kinds that source may emit (see SourcesOf): any other
// is refused with ErrForbiddenSource, as every consumer would refuse it.
func NewPublisher(js jetstream.JetStream, source string, opts ...PublisherOption) *Publisher {
	p := &Publisher{js: js, source: source, tracer: otel.GetTracerProvider().Tracer(instrumentationName), maxSize: DefaultMaxEventSize}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Publish wraps p in an event and publishes it; see PublishEvent.
func (p *Publisher) Publish(ctx context.Context, payload Payload, opts ...EventOption) (Event, bool, error) {
	ev, err := NewEvent(p.source, payload, opts...)
	if err != nil {
		return Event{}, false, err
	}
	dup, err := p.PublishEvent(ctx, ev)
	return ev, dup, err
}

// PublishEvent publishes ev and waits for the stream to store it. duplicate
// is true when the stream already had an event with this id (a retried
// handler): nothing new was stored, and that is not an error. An event
// larger than the publisher's limit is not sent: the error wraps
// ErrTooLarge (permanent, see IsPermanent).
func (p *Publisher) PublishEvent(ctx context.Context, ev Event) (duplicate bool, err error) {
	k := ev.Kind()
	ctx, span := p.tracer.Start(ctx, "publish "+string(k), trace.WithSpanKind(trace.SpanKindProducer))
	recording := span.IsRecording() // attributes cost allocations on every hop; none when not traced
	if recording {
		span.SetAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("cloudevents.event_id", ev.CloudEvent.ID()),
			attribute.String("cloudevents.event_type", ev.CloudEvent.Type()),
			attribute.String("freezeframe.backup_id", ev.BackupID()),
		)
	}
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	// Every consumer would refuse it: say so here, where the misconfigured
	// source can be fixed.
	if err := CheckSource(ev); err != nil {
		return false, fmt.Errorf("publish %s: %w", k, err)
	}
	msg, err := Encode(ev)
	if err != nil {
		return false, err
	}
	traceContext.Inject(ctx, headerCarrier(msg.Header))
	// Counted as the consumer counts it: WithMsgID adds its header.
	if n := wireSize(msg.Header, msg.Data) + len(jetstream.MsgIDHeader) + len(ev.CloudEvent.ID()); n > p.maxSize {
		return false, fmt.Errorf("publish %s %s: %w: %d bytes, limit %d", k, ev.CloudEvent.ID(), ErrTooLarge, n, p.maxSize)
	}
	if recording {
		span.SetAttributes(attribute.String("messaging.destination.name", msg.Subject))
	}
	ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.CloudEvent.ID()))
	if err != nil {
		return false, fmt.Errorf("publish %s %s: %w", k, ev.CloudEvent.ID(), err)
	}
	if recording {
		span.SetAttributes(attribute.Bool("messaging.nats.duplicate", ack.Duplicate), attribute.Int64("messaging.nats.sequence", int64(ack.Sequence)))
	}
	return ack.Duplicate, nil
}
