package service

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// Bus is a service's connection to the backup event stream.
type Bus struct {
	Conn      *nats.Conn
	JetStream jetstream.JetStream
	Publisher *events.Publisher
	Stream    string
	// StreamMaxAge is how long the stream keeps events, as the stream says
	// (an operator's limit wins over the configuration); 0: for ever.
	StreamMaxAge time.Duration
}

// OpenBus connects to NATS and makes sure the event stream exists. Events
// are published with source "/freezeframe/<name>".
func OpenBus(ctx context.Context, c Common, name string, log *slog.Logger) (*Bus, error) {
	nc, js, err := Connect(ctx, c.NATS, "freezeframe-"+name, log)
	if err != nil {
		return nil, err
	}
	stream, err := events.EnsureStream(ctx, js, events.StreamConfig{Name: c.NATS.Stream, Replicas: c.NATS.StreamReplicas, MaxAge: c.NATS.StreamMaxAge})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("open bus: %w", err)
	}
	return &Bus{Conn: nc, JetStream: js, Publisher: events.NewPublisher(js, "/freezeframe/"+name), Stream: c.NATS.Stream,
		StreamMaxAge: stream.CachedInfo().Config.MaxAge}, nil
}

// Close drains the connection (pending publishes and acks are flushed
// first) and waits for it to close, at most 5 seconds.
func (b *Bus) Close() {
	closed := make(chan struct{})
	b.Conn.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := b.Conn.Drain(); err != nil {
		b.Conn.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		b.Conn.Close()
	}
}
