package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Client is the API for programs outside this repository: request backups,
// follow their events, wait for their outcome.
type Client struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream string
	pub    *Publisher
}

// ClientOption adjusts a Client.
type ClientOption func(*Client)

// WithStream names the event stream, when it is not DefaultStream.
func WithStream(name string) ClientOption { return func(c *Client) { c.stream = name } }

// WithSource sets the CloudEvents source of published events (default
// SourceClient, "/freezeframe/client"). Consumers act only on events whose
// source may emit their kind (see SourcesOf and CheckSource): a client's
// events carry SourceClient or SourceCLI, and the publisher refuses any
// other with ErrForbiddenSource.
func WithSource(source string) ClientOption {
	return func(c *Client) { c.pub = NewPublisher(c.js, source) }
}

// NewClient returns a client over an established NATS connection.
func NewClient(nc *nats.Conn, opts ...ClientOption) (*Client, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("new client: %w", err)
	}
	c := &Client{nc: nc, js: js, stream: DefaultStream}
	c.pub = NewPublisher(js, SourceClient)
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// NewBackupID returns a fresh backup id; ids sort by creation time.
func NewBackupID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return "bk-" + uuid.NewString()
	}
	return "bk-" + id.String()
}

// PublishBackupRequested puts a BackupRequested straight onto the stream,
// without the scheduler's checks; a missing BackupID is filled in. Publishing
// the same BackupID again is dropped by the stream. Its SnapshotsToKeep is
// ignored by the hooker (the Quiesced says so in RetentionIgnored): only a
// BackupPolicy or the workload's annotation sets retention (see
// BackupRequested.SnapshotsToKeep).
func (c *Client) PublishBackupRequested(ctx context.Context, req BackupRequested) (Event, error) {
	if req.BackupID == "" {
		req.BackupID = NewBackupID()
	}
	if req.RequestedBy == "" {
		req.RequestedBy = "api"
	}
	ev, _, err := c.pub.Publish(ctx, &req)
	return ev, err
}

// APISubject is where the scheduler of a cluster answers ad-hoc backup requests.
func APISubject(cluster string) string { return "freezeframe.api.backup." + cluster }

// BackupRequestReply is the scheduler's answer to an ad-hoc request.
type BackupRequestReply struct {
	BackupID string `json:"backupId"`
	// Error says why the request was refused; a BackupFailed was published
	// too, unless Retryable.
	Error string `json:"error,omitempty"`
	// Retryable is true when nothing was recorded and the same request may
	// succeed later (Kubernetes or JetStream unreachable).
	Retryable bool `json:"retryable,omitempty"`
}

// ErrRequestRefused is returned when the scheduler refused a request.
var ErrRequestRefused = errors.New("backup request refused")

// RequestBackup asks the cluster's scheduler for a backup and returns its
// id. The scheduler checks the workload before it publishes BackupRequested.
// As with PublishBackupRequested, a SnapshotsToKeep set here is ignored.
// The id is chosen here, so retrying after a lost reply cannot start a
// second backup.
func (c *Client) RequestBackup(ctx context.Context, req BackupRequested) (string, error) {
	if req.BackupID == "" {
		req.BackupID = NewBackupID()
	}
	if req.RequestedBy == "" {
		req.RequestedBy = "api"
	}
	if err := req.Validate(); err != nil {
		return "", fmt.Errorf("request backup: %w", err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return "", fmt.Errorf("request backup: %w", err)
	}
	ctx, span := c.pub.tracer.Start(ctx, "request backup", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("freezeframe.backup_id", req.BackupID)))
	defer span.End()
	for attempt := 1; ; attempt++ {
		// A scheduler answers in milliseconds; one killed while it held the
		// request never does. The id makes a retry safe, so do not wait long.
		rctx, cancel := context.WithTimeout(ctx, requestAttemptTimeout)
		out := nats.NewMsg(APISubject(req.Workload.Cluster))
		out.Data = body
		traceContext.Inject(ctx, headerCarrier(out.Header))
		msg, err := c.nc.RequestMsgWithContext(rctx, out)
		cancel()
		if err == nil {
			var reply BackupRequestReply
			if err := json.Unmarshal(msg.Data, &reply); err != nil {
				return "", fmt.Errorf("request backup: read reply: %w", err)
			}
			switch {
			case reply.Error == "":
				return reply.BackupID, nil
			case !reply.Retryable:
				return reply.BackupID, fmt.Errorf("%w: %s", ErrRequestRefused, reply.Error)
			}
			err = errors.New(reply.Error)
		}
		if ctx.Err() != nil || attempt >= 5 {
			if errors.Is(err, nats.ErrNoResponders) {
				return "", fmt.Errorf("request backup: no scheduler answers on %s: is freezeframe running for cluster %q?", APISubject(req.Workload.Cluster), req.Workload.Cluster)
			}
			return "", fmt.Errorf("request backup: %w", err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("request backup: %w", ctx.Err())
		case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
		}
	}
}

// SubscribeOptions say where a subscription starts.
type SubscribeOptions struct {
	// FromStart replays every stored event that matches before following.
	FromStart bool
	// Since replays events stored since that time (ignored with FromStart).
	Since time.Time
}

// Subscribe yields the events that match f, in stream order, until ctx ends
// or the caller stops iterating. A message that cannot be decoded is yielded
// as an error, and iteration goes on.
func (c *Client) Subscribe(ctx context.Context, f Filter, opts SubscribeOptions) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		subjects, err := f.Subjects()
		if err != nil {
			yield(Event{}, err)
			return
		}
		cfg := jetstream.OrderedConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverNewPolicy}
		switch {
		case opts.FromStart:
			cfg.DeliverPolicy = jetstream.DeliverAllPolicy
		case !opts.Since.IsZero():
			cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
			cfg.OptStartTime = &opts.Since
		}
		cons, err := c.js.OrderedConsumer(ctx, c.stream, cfg)
		if err != nil {
			yield(Event{}, fmt.Errorf("subscribe: %w", err))
			return
		}
		// A short heartbeat: a consumer lost with its node (a stream leader
		// failing over) is noticed and recreated from the last event seen
		// within about two heartbeats, not the default ten seconds.
		msgs, err := cons.Messages(jetstream.PullHeartbeat(subscribeHeartbeat))
		if err != nil {
			yield(Event{}, fmt.Errorf("subscribe: %w", err))
			return
		}
		defer msgs.Stop()
		stop := context.AfterFunc(ctx, msgs.Stop)
		defer stop()
		for {
			msg, err := msgs.Next()
			if err != nil {
				if ctx.Err() != nil {
					yield(Event{}, ctx.Err())
					return
				}
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				if !yield(Event{}, fmt.Errorf("subscribe: %w", err)) {
					return
				}
				continue
			}
			ev, err := DecodeMessage(msg.Subject(), msg.Headers(), msg.Data())
			if !yield(ev, err) {
				return
			}
		}
	}
}

// Wait follows backup id until its freeze ends (see [IsTerminal]) and
// returns the event that ended it; onEvent, when not nil, sees every event
// of the backup in order, that one included. Use events.Succeeded on the
// result to tell success from failure. WaitReady waits for the snapshot to
// be ready too.
func (c *Client) Wait(ctx context.Context, backupID string, onEvent func(Event)) (Event, error) {
	return c.waitUntil(ctx, backupID, onEvent, IsTerminal)
}

// WaitReady is Wait until the backup is complete (see [Completion]): for a
// successful backup, both its Resumed and its SnapshotReady. It returns the
// event that completed the backup; judge it with [Succeeded].
func (c *Client) WaitReady(ctx context.Context, backupID string, onEvent func(Event)) (Event, error) {
	var done Completion
	return c.waitUntil(ctx, backupID, onEvent, done.Observe)
}

func (c *Client) waitUntil(ctx context.Context, backupID string, onEvent func(Event), done func(Event) bool) (Event, error) {
	for ev, err := range c.Subscribe(ctx, Filter{BackupID: backupID}, SubscribeOptions{FromStart: true}) {
		if err != nil {
			if ctx.Err() != nil {
				return Event{}, fmt.Errorf("wait for backup %s: %w", backupID, ctx.Err())
			}
			continue
		}
		if onEvent != nil {
			onEvent(ev)
		}
		if done(ev) {
			return ev, nil
		}
	}
	return Event{}, fmt.Errorf("wait for backup %s: %w", backupID, ctx.Err())
}

// List returns the stored events that match f, oldest first, without
// waiting for new ones. It reads through a short-lived pull consumer, each
// call bounded by ctx: an ordered consumer's reset after a lost node retried
// without end, whatever ctx said.
func (c *Client) List(ctx context.Context, f Filter, opts SubscribeOptions) ([]Event, error) {
	subjects, err := f.Subjects()
	if err != nil {
		return nil, err
	}
	cfg := jetstream.ConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckNonePolicy,
		InactiveThreshold: 30 * time.Second, Replicas: 1, MemoryStorage: true}
	if !opts.FromStart && !opts.Since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &opts.Since
	}
	cons, err := c.js.CreateConsumer(ctx, c.stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = c.js.DeleteConsumer(dctx, c.stream, cons.CachedInfo().Name)
	}()
	want := int(cons.CachedInfo().NumPending)
	var out []Event
	for got := 0; got < want; {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		batch, err := cons.Fetch(min(want-got, 256), jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			if ev, err := DecodeMessage(msg.Subject(), msg.Headers(), msg.Data()); err == nil {
				out = append(out, ev)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("list events: %w", err)
		}
		if n == 0 {
			break // what was pending went (age or size limits) meanwhile
		}
		got += n
	}
	return out, nil
}

// requestAttemptTimeout bounds one attempt at a backup request.
const requestAttemptTimeout = 3 * time.Second

// subscribeHeartbeat is the idle heartbeat of a subscription's consumer.
const subscribeHeartbeat = time.Second
