package notify

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/service"
)

// Durable is the consumer the notifier replicas share.
const Durable = events.DurableNotifier

// Notifier tells people that a backup or a restore ended.
type Notifier interface {
	// Notify is called with each terminal event of a backup, and each
	// Restored and RestoreFailed, at least once. An error is
	// retried with backoff; one wrapped with events.Permanent is not.
	Notify(ctx context.Context, ev events.Event) error
}

// Service is one notifier replica.
type Service struct {
	cfg      Config
	notifier Notifier
	log      *slog.Logger
	metrics  metrics
	history  History // set by Run, for the failed step of a backup
}

// New returns a notifier service that notifies through n.
func New(cfg Config, n Notifier, log *slog.Logger) *Service {
	return &Service{cfg: cfg.withDefaults(), notifier: n, log: log, metrics: newMetrics(cfg.Common)}
}

// SharedConsumers are the durables the notifier replicas share, as cfg
// sets them: `freezeframe setup` creates them (events.Setup).
func (c Config) SharedConsumers() []events.ConsumerConfig {
	c = c.withDefaults()
	d, _ := events.DurableNamed(Durable)
	cc := d.Consumer(c.NATS.Stream)
	cc.Concurrency, cc.ShutdownGrace, cc.Meters = c.Concurrency, c.ShutdownTimeout, c.Common.Runtime.Meters
	return []events.ConsumerConfig{cc}
}

// Run notifies terminal events from the stream until ctx ends, then lets
// the notifications in flight finish within the shutdown timeout.
func (s *Service) Run(ctx context.Context, js jetstream.JetStream) error {
	var c *events.Consumer
	if err := service.AwaitSetUp(ctx, s.log, "bind the notifier's consumer", func(ctx context.Context) (err error) {
		c, err = events.NewConsumer(ctx, js, s.cfg.SharedConsumers()[0], s.handle, s.log)
		return err
	}); err != nil {
		return err
	}
	stream := s.cfg.NATS.Stream
	if stream == "" {
		stream = events.DefaultStream
	}
	s.history = events.NewStreamHistory(js, stream)
	lag, err := service.ObserveConsumers(s.cfg.Common, js, stream, Durable)
	if err != nil {
		return err
	}
	defer func() { _ = lag.Unregister() }()
	s.cfg.Runtime.Probe.Ready(js.Conn())
	s.log.InfoContext(ctx, "notifying terminal backup and restore events", "consumer", Durable)
	return c.Run(ctx)
}

func (s *Service) handle(ctx context.Context, ev events.Event) error {
	s.countBackup(ctx, ev)
	if id := events.RestoreIDOf(ev); id != "" {
		if err := s.notifier.Notify(ctx, ev); err != nil {
			return fmt.Errorf("notify end of restore %s of backup %s: %w", id, ev.BackupID(), err)
		}
		return nil
	}
	if !events.IsTerminal(ev) {
		return nil // a Resumed follows and ends the backup
	}
	if err := s.notifier.Notify(ctx, ev); err != nil {
		return fmt.Errorf("notify end of backup %s: %w", ev.BackupID(), err)
	}
	return nil
}
