package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/service"
)

func cmdSetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("setup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf connectFlags
	addConnectFlags(fs, &cf, events.RoleAdmin)
	var cfgs upConfigs
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: freezeframe setup [flags]

Creates or updates what the services need on NATS, with an admin identity:
the event stream (an existing stream keeps the limits an operator set on
it), the durable consumers the services share, and the key-value buckets.
The services do not create them and wait, not ready, until this has run.
It reads the services' configuration from the environment, as
"freezeframe up" does (STREAM_REPLICAS, STREAM_MAX_AGE, HOOKER_ACK_WAIT,
...), so that the consumers match the services' settings. Idempotent.
Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseNoPositional(fs, args); err != nil {
		return err
	}
	if err := cfgs.each(func(_, prefix string, cfg any, _ *service.Common) error {
		_, err := service.Load(prefix, cfg, nil, io.Discard)
		return err
	}); err != nil {
		return err
	}
	nc, _, js, err := cf.connectJetStream()
	if err != nil {
		return err
	}
	defer nc.Close()
	cfgs.hooker.NATS.Stream = cf.stream
	return setUpBus(ctx, js, cfgs, slog.New(slog.NewTextHandler(stderr, nil)), func(line string) { fmt.Fprintln(stdout, line) })
}

// setUpBus runs events.Setup with the services' settings, waiting while a
// fresh JetStream cluster forms.
func setUpBus(ctx context.Context, js jetstream.JetStream, cfgs upConfigs, log *slog.Logger, report func(string)) error {
	return service.RetryWhileJetStreamForms(ctx, log, "set up the bus", func(ctx context.Context) error {
		return events.Setup(ctx, js, cfgs.setupConfig(), report)
	})
}

// setupConfig is what the four services configured need on the bus.
func (u *upConfigs) setupConfig() events.SetupConfig {
	n := u.hooker.NATS
	stream := n.Stream
	var consumers []events.ConsumerConfig
	for _, c := range slices.Concat(u.hooker.SharedConsumers(), u.snapshotter.SharedConsumers(), u.notifier.SharedConsumers()) {
		c.Stream = stream
		consumers = append(consumers, c)
	}
	return events.SetupConfig{
		Stream:        events.StreamConfig{Name: stream, Replicas: n.StreamReplicas, MaxAge: n.StreamMaxAge},
		Consumers:     consumers,
		FreezesBucket: u.hooker.LeaseBucket,
		LedgerBucket:  u.notifier.SlackConfig.Bucket,
	}
}
