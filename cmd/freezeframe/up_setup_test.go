package main

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/service"
)

// On a NATS of its own, `up` sets the bus up when its services share one
// identity, and leaves it to the admin's `freezeframe setup` when they have
// their own: it does not even try, since a service's identity would be
// refused.
func TestUpSetsUpOnlyASharedBus(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env       map[string]string
		setsUpBus bool
	}{
		{"shared identity", nil, true},
		{"own identities", map[string]string{"HOOKER_NATS_NKEY": "/run/secrets/hooker.nk"}, false},
		{"own creds", map[string]string{"SNAPSHOTTER_NATS_CREDS": "/run/secrets/snapshotter.creds"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := eventstest.NewBareServer(t)
			t.Setenv("NATS_URL", srv.ClientURL())
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var cfgs upConfigs
			if err := cfgs.each(func(_, prefix string, cfg any, _ *service.Common) error {
				_, err := service.Load(prefix, cfg, nil, io.Discard)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			// The services' own seeds do not exist here: only the shared case connects.
			cfgs.hooker.NATS.NKeyFile, cfgs.hooker.NATS.CredsFile = "", ""
			if err := upSetUpBus(t.Context(), cfgs, false, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
				t.Fatalf("up's set-up: %v", err)
			}
			// Not srv.JetStream(): it would make the stream.
			js, err := jetstream.New(srv.Connect())
			if err != nil {
				t.Fatal(err)
			}
			_, err = js.Stream(t.Context(), events.DefaultStream)
			switch {
			case tc.setsUpBus && err != nil:
				t.Fatalf("stream after up's set-up of a shared bus: %v", err)
			case !tc.setsUpBus && !errors.Is(err, jetstream.ErrStreamNotFound):
				t.Fatalf("stream after up on a bus with per-service identities: %v, want none (the admin sets it up)", err)
			}
		})
	}
}
