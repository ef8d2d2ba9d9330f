package events_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

// Setup keeps the limits an operator gave an existing stream, sizes the
// buckets by them, creates every shared durable, and may run again.
func TestSetupKeepsTheOperatorsLimits(t *testing.T) {
	srv := eventstest.NewBareServer(t)
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: events.DefaultStream, Subjects: []string{"freezeframe.backup.>"},
		MaxAge: 2 * time.Hour, MaxBytes: 1 << 20, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := events.BindKeyValue(ctx, js, events.FreezesBucket); !errors.Is(err, events.ErrNotSetUp) {
		t.Fatalf("bucket before set-up: %v, want ErrNotSetUp", err)
	}
	for range 2 {
		var said []string
		if err := events.Setup(ctx, js, events.SetupConfig{}, func(s string) { said = append(said, s) }); err != nil {
			t.Fatal(err)
		}
		if len(said) != 1+len(events.Durables())+3 || !strings.Contains(said[0], "kept, its limits unchanged") {
			t.Errorf("set-up said %q", said)
		}
	}
	s, err := events.BindStream(ctx, js, "")
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; c.MaxAge != 2*time.Hour || c.MaxBytes != 1<<20 || c.Duplicates != time.Hour {
		t.Errorf("stream after set-up: max age %s, max bytes %d, duplicates %s; want the operator's 2h and 1 MiB, and a 1h window", c.MaxAge, c.MaxBytes, c.Duplicates)
	}
	for _, d := range events.Durables() {
		c, err := js.Consumer(ctx, events.DefaultStream, d.Name)
		if err != nil {
			t.Errorf("consumer %s: %v", d.Name, err)
			continue
		}
		if got := c.CachedInfo().Config.FilterSubjects; len(got) != len(d.Kinds) {
			t.Errorf("consumer %s filters %v, want one subject per kind of %v", d.Name, got, d.Kinds)
		}
	}
	ended, err := events.BindKeyValue(ctx, js, events.BackupsBucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ended.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != 2*time.Hour {
		t.Errorf("backups bucket TTL %s, want the stream's max age 2h", st.TTL())
	}
	for _, b := range []string{events.FreezesBucket, events.LedgerBucket} {
		if _, err := events.BindKeyValue(ctx, js, b); err != nil {
			t.Errorf("bucket %s: %v", b, err)
		}
	}
}

// A shared durable is bound, never created, by a service: missing, it says
// so with ErrNotSetUp.
func TestNewConsumerDoesNotCreateASharedDurable(t *testing.T) {
	srv := eventstest.NewBareServer(t)
	_, js := srv.JetStream() // the stream only
	_, err := events.NewConsumer(t.Context(), js, events.ConsumerConfig{Durable: events.DurableHooker, Kinds: []events.Kind{events.KindRequested}},
		func(context.Context, events.Event) error { return nil }, quietLog())
	if !errors.Is(err, events.ErrNotSetUp) {
		t.Fatalf("NewConsumer of a missing shared durable: %v, want ErrNotSetUp", err)
	}
	if _, err := js.Consumer(t.Context(), events.DefaultStream, events.DurableHooker); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("consumer after NewConsumer: %v, want none", err)
	}
}
