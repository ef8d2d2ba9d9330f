package events_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

// A consumer's MaxEventSize is its own: an event the publisher may send
// (under the publisher's limit) is terminated unread by a consumer with a
// smaller one, and handled by one without.
func TestConsumerMaxEventSize(t *testing.T) {
	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	var small, dflt atomic.Int32
	runConsumer(t, js, events.ConsumerConfig{Durable: "small", Kinds: []events.Kind{events.KindFailed}, MaxEventSize: 2048},
		func(context.Context, events.Event) error { small.Add(1); return nil })
	runConsumer(t, js, events.ConsumerConfig{Durable: "default", Kinds: []events.Kind{events.KindFailed}},
		func(context.Context, events.Event) error { dflt.Add(1); return nil })
	pub := eventstest.NewPipeline(js)
	for i, n := range []int{100, 4000} {
		if _, _, err := pub.Publish(t.Context(), &events.BackupFailed{BackupRef: events.BackupRef{BackupID: "bk-size-" + string(rune('a'+i)), Workload: redis}, Step: events.StepQuiesce, Reason: strings.Repeat("x", n)}); err != nil {
			t.Fatal(err)
		}
	}
	settled := func(durable string) bool {
		c, err := js.Consumer(t.Context(), events.DefaultStream, durable)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == 2
	}
	eventstest.Eventually(t, 10*time.Second, "both consumers settled both events", func() bool {
		return settled("small") && settled("default") && dflt.Load() == 2
	})
	if n := small.Load(); n != 1 {
		t.Errorf("the consumer with a 2 KiB limit handled %d events, want only the small one", n)
	}
}
