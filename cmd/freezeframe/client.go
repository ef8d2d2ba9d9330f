package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// connectFlags are the flags every client command shares.
type connectFlags struct {
	natsURL string
	stream  string
	cluster string
}

func (c *connectFlags) client(ctx context.Context) (*events.Client, func(), error) {
	nc, err := nats.Connect(c.natsURL, nats.Name("freezeframe-cli"), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s (is `freezeframe up` running? set NATS_URL or --nats): %w", c.natsURL, err)
	}
	cl, err := events.NewClient(nc, events.WithStream(c.stream), events.WithSource("/freezeframe/cli"))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return cl, nc.Close, nil
}
