package eventstest

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// EmitterOf is the role a test stands in for when it sends an event of kind
// k: the first service (then the CLI's roles) the access table lets emit it.
// Consumers refuse an event whose source is not allowed for its kind, so a
// test double must speak as the role it replaces. A kind nobody may emit
// gets the admin role, whose events every publisher and consumer refuses.
func EmitterOf(k events.Kind) events.Role {
	for _, r := range events.Roles() {
		if r.MayEmit(k) {
			return r
		}
	}
	return events.RoleAdmin
}

// SourceOf is the CloudEvents source of EmitterOf(k).
func SourceOf(k events.Kind) string { return EmitterOf(k).Source() }

// Pipeline publishes each event as the role that emits its kind (see
// EmitterOf), for tests that play several services at once: the transport,
// the client's readers. A test standing in for one service should use that
// service's own publisher (events.NewPublisher(js, events.RoleHooker.Source())).
type Pipeline struct {
	js   jetstream.JetStream
	opts []events.PublisherOption
}

// NewPipeline publishes through js with opts on every publisher.
func NewPipeline(js jetstream.JetStream, opts ...events.PublisherOption) *Pipeline {
	return &Pipeline{js: js, opts: opts}
}

// Publish publishes p as its kind's emitter (see events.Publisher.Publish).
func (p *Pipeline) Publish(ctx context.Context, payload events.Payload, opts ...events.EventOption) (events.Event, bool, error) {
	return p.publisher(payload).Publish(ctx, payload, opts...)
}

// PublishEvent publishes ev as it is (its source included).
func (p *Pipeline) PublishEvent(ctx context.Context, ev events.Event) (bool, error) {
	return events.NewPublisher(p.js, ev.CloudEvent.Source(), p.opts...).PublishEvent(ctx, ev)
}

func (p *Pipeline) publisher(payload events.Payload) *events.Publisher {
	k, _ := events.KindOf(payload.EventType())
	return events.NewPublisher(p.js, SourceOf(k), p.opts...)
}

// NewEvent builds an event of payload's kind as its emitter would.
func NewEvent(payload events.Payload, opts ...events.EventOption) (events.Event, error) {
	k, _ := events.KindOf(payload.EventType())
	return events.NewEvent(SourceOf(k), payload, opts...)
}
