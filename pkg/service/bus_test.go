package service_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/service"
)

// Four services starting at once on a fresh 3-node cluster, while the
// admin's set-up runs, all open the bus: JetStream's timeouts while the
// cluster forms, and the stream missing until the set-up made it, are
// waited out, not fatal (they used to make every service exit).
func TestServicesStartTogetherOnAFreshCluster(t *testing.T) {
	nodes := eventstest.NewCluster(t, 3)
	c := service.Common{NATS: service.NATS{URL: strings.Join(eventstest.ClientURLs(nodes), ","), Stream: "FREEZEFRAME", StreamReplicas: 3}}
	log := slog.New(slog.DiscardHandler)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	wg.Go(func() {
		nc, js, err := service.Connect(t.Context(), c.NATS, "admin", log)
		if err != nil {
			t.Error(err)
			return
		}
		defer nc.Close()
		if err := service.RetryWhileJetStreamForms(t.Context(), log, "set up", func(ctx context.Context) error {
			return events.Setup(ctx, js, events.SetupConfig{Stream: events.StreamConfig{Replicas: 3}}, nil)
		}); err != nil {
			t.Errorf("set up: %v", err)
		}
	})
	for i, name := range []string{"scheduler", "hooker", "snapshotter", "notifier"} {
		wg.Go(func() {
			bus, err := service.OpenBus(t.Context(), c, name, log)
			if err == nil {
				if bus.StreamMaxAge <= 0 {
					t.Errorf("%s: stream max age %s, want the default", name, bus.StreamMaxAge)
				}
				bus.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("service %d: %v", i, err)
		}
	}
}

// A service started before `freezeframe setup` says what is missing and
// what to run, and binds once the set-up is done, instead of exiting.
func TestServiceWaitsForSetUp(t *testing.T) {
	srv := eventstest.NewBareServer(t)
	c := service.Common{NATS: service.NATS{URL: srv.ClientURL(), Stream: events.DefaultStream}}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	opened := make(chan error, 1)
	go func() {
		bus, err := service.OpenBus(t.Context(), c, "hooker", log)
		if err == nil {
			bus.Close()
		}
		opened <- err
	}()
	eventstest.Eventually(t, 10*time.Second, "the service saying the stream is missing", func() bool {
		return strings.Contains(logs.String(), "stream FREEZEFRAME not found") && strings.Contains(logs.String(), "freezeframe setup")
	})
	select {
	case err := <-opened:
		t.Fatalf("OpenBus returned before the set-up: %v", err)
	default:
	}
	_, js := srv.JetStream()
	if err := events.Setup(t.Context(), js, events.SetupConfig{}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-opened:
		if err != nil {
			t.Fatalf("OpenBus after the set-up: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("OpenBus still waiting 30s after the set-up")
	}
}

// syncBuffer is a log destination read while a goroutine writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
