package service

import (
	"context"
	"errors"
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

// OpenBus connects to NATS as the role name ("hooker": replies on
// events.InboxPrefix of it) and binds to the event stream, waiting for
// `freezeframe setup` to create it if it is missing. Events are published
// with source "/freezeframe/<name>".
func OpenBus(ctx context.Context, c Common, name string, log *slog.Logger) (*Bus, error) {
	nc, js, err := Connect(ctx, c.NATS, "freezeframe-"+name, log, nats.CustomInboxPrefix(events.InboxPrefix(events.Role(name))))
	if err != nil {
		return nil, err
	}
	var stream jetstream.Stream
	err = AwaitSetUp(ctx, log, "bind the event stream", func(ctx context.Context) (err error) {
		stream, err = events.BindStream(ctx, js, c.NATS.Stream)
		return err
	})
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

// ensureStreamPatience is how long a service waits for JetStream to answer
// at start: a fresh cluster electing its meta leader times out for a few
// seconds.
const ensureStreamPatience = time.Minute

// AwaitSetUp calls f until it succeeds or fails otherwise than with a
// JetStream still forming (see RetryWhileJetStreamForms) or a resource
// missing (events.ErrNotSetUp). A missing stream, consumer or bucket is
// waited for as long as ctx lasts, and said in the log now and then: the
// service is not ready until an admin runs `freezeframe setup`.
func AwaitSetUp(ctx context.Context, log *slog.Logger, what string, f func(context.Context) error) error {
	var lastSaid time.Time
	for attempt := 1; ; attempt++ {
		err := RetryWhileJetStreamForms(ctx, log, what, f)
		if err == nil || !errors.Is(err, events.ErrNotSetUp) || ctx.Err() != nil {
			return err
		}
		if time.Since(lastSaid) >= setUpReminder {
			log.WarnContext(ctx, "waiting for the bus to be set up", "what", what, "attempt", attempt, "err", err)
			lastSaid = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (%w)", what, ctx.Err(), err)
		case <-time.After(min(time.Duration(attempt)*500*time.Millisecond, 5*time.Second)):
		}
	}
}

// setUpReminder is how often a service waiting for `freezeframe setup`
// says so.
const setUpReminder = 30 * time.Second

// RetryWhileJetStreamForms calls f until it succeeds, fails with an error
// other than JetStream not answering in time (a timeout, no responders, a
// cluster without a meta leader yet), or a minute has passed: what a service
// does at start while a fresh cluster forms or several services create
// their stream and buckets at once.
func RetryWhileJetStreamForms(ctx context.Context, log *slog.Logger, what string, f func(context.Context) error) error {
	deadline := time.Now().Add(ensureStreamPatience)
	for attempt := 1; ; attempt++ {
		err := f(ctx)
		if err == nil || !jetStreamBusy(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		log.WarnContext(ctx, "JetStream not answering yet, retrying", "what", what, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(attempt)*250*time.Millisecond, 2*time.Second)):
		}
	}
}

// jetStreamBusy reports an error that a JetStream still forming or busy
// answers with, and that passes.
func jetStreamBusy(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		// nats-server's JSClusterNoPeersErrF, JSClusterNotActiveErr,
		// JSClusterNotAvailErr, JSClusterNotLeaderErr: a cluster still
		// forming or electing (nats.go names no constants for them).
		case 10005, 10006, 10008, 10009:
			return true
		}
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}
