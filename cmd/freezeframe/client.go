package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// connectFlags are the flags every client command shares.
type connectFlags struct {
	natsURL string
	stream  string
	cluster string
}

func (c *connectFlags) client(ctx context.Context) (*events.Client, func(), error) {
	nc, cl, _, err := c.connectJetStream()
	if err != nil {
		return nil, nil, err
	}
	return cl, nc.Close, nil
}

// connectJetStream opens the connection of a command that reads the stream
// and the key-value buckets directly.
func (c *connectFlags) connectJetStream() (*nats.Conn, *events.Client, jetstream.JetStream, error) {
	nc, err := nats.Connect(c.natsURL, nats.Name("freezeframe-cli"), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("connect to NATS at %s (is `freezeframe up` running? set NATS_URL or --nats): %w", c.natsURL, err)
	}
	cl, err := events.NewClient(nc, events.WithStream(c.stream), events.WithSource(events.SourceCLI))
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, cl, js, nil
}
