package service

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS says how to reach NATS and how to size the event stream.
type NATS struct {
	URL            string        `envconfig:"NATS_URL" default:"nats://127.0.0.1:4222" desc:"NATS server URL(s), comma-separated"`
	CredsFile      string        `envconfig:"NATS_CREDS" desc:"path of a NATS .creds file (JWT + nkey)"`
	NKeyFile       string        `envconfig:"NATS_NKEY" desc:"path of an nkey seed file"`
	TLSCA          string        `envconfig:"NATS_TLS_CA" desc:"path of a CA bundle to verify the NATS server"`
	TLSCert        string        `envconfig:"NATS_TLS_CERT" desc:"path of a client certificate for NATS mTLS"`
	TLSKey         string        `envconfig:"NATS_TLS_KEY" desc:"path of the client certificate's key"`
	Stream         string        `envconfig:"STREAM" default:"FREEZEFRAME" desc:"JetStream stream holding every backup event"`
	StreamReplicas int           `envconfig:"STREAM_REPLICAS" default:"1" desc:"stream and key-value replicas (3 in a JetStream cluster)"`
	StreamMaxAge   time.Duration `envconfig:"STREAM_MAX_AGE" default:"720h" desc:"how long backup events are kept"`
}

// Connect opens a NATS connection that reconnects forever: a service whose
// NATS went away waits for it rather than exiting mid-backup. The extra
// options (a custom inbox prefix) are applied last.
func Connect(ctx context.Context, cfg NATS, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
		// A permissions violation is otherwise silent: the request or
		// publish just goes unanswered.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Warn("nats", "err", err) }),
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("connect nats: nkey: %w", err)
		}
		opts = append(opts, o)
	}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	if cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect nats %s: %w", cfg.URL, err)
	}
	// RetryOnFailedConnect returns at once; wait for the first connection so
	// that stream setup does not fail on a server that starts a moment later.
	for !nc.IsConnected() {
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, nil, fmt.Errorf("connect nats %s: %w", cfg.URL, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}
