package main

import (
	"context"
	"fmt"
	"os"
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
	// nkey and creds are the identity's credentials; role names its inbox
	// prefix (events.InboxPrefix), which the identity's permissions allow.
	nkey, creds, tlsCA string
	role               string
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
	opts := []nats.Option{nats.Name("freezeframe-cli"), nats.Timeout(5 * time.Second),
		nats.CustomInboxPrefix(events.InboxPrefix(events.Role(c.role))),
		// A refused publish or subscription otherwise just goes unanswered.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			fmt.Fprintf(os.Stderr, "freezeframe: NATS: %v (identity of role %q: see `freezeframe nats-auth`)\n", err, c.role)
		})}
	if c.nkey != "" {
		o, err := nats.NkeyOptionFromSeed(c.nkey)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("nkey %s: %w", c.nkey, err)
		}
		opts = append(opts, o)
	}
	if c.creds != "" {
		opts = append(opts, nats.UserCredentials(c.creds))
	}
	if c.tlsCA != "" {
		opts = append(opts, nats.RootCAs(c.tlsCA))
	}
	nc, err := nats.Connect(c.natsURL, opts...)
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
