package events

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// headerCarrier adapts NATS headers to OpenTelemetry propagation without
// canonicalising keys: NATS headers are case-sensitive and the W3C names are
// lower case ("traceparent"), which propagation.HeaderCarrier would rewrite.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c headerCarrier) Set(key, value string) { c[key] = []string{value} }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// traceContext is always W3C trace context, whatever the global propagator:
// the wire format is part of the contract, not a deployment choice.
var traceContext propagation.TextMapPropagator = propagation.TraceContext{}

const instrumentationName = "github.com/freezeframe/freezeframe/pkg/events"

// ExtractRequestContext returns ctx carrying the trace context of a core
// NATS request (as sent by Client.RequestBackup), for the responder's span.
func ExtractRequestContext(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return traceContext.Extract(ctx, headerCarrier(h))
}
