package events_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

// Concurrency bounds the handlers running at once; the workers that ran a
// burst go on to handle what comes next.
func TestConsumerConcurrencyBound(t *testing.T) {
	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	var (
		mu           sync.Mutex
		running, top int
		handled      = map[string]bool{}
	)
	release := make(chan struct{})
	runConsumer(t, js, events.ConsumerConfig{Durable: "t", Kinds: []events.Kind{events.KindRequested}, Concurrency: 2},
		func(_ context.Context, ev events.Event) error {
			mu.Lock()
			running++
			top = max(top, running)
			mu.Unlock()
			<-release
			mu.Lock()
			running--
			handled[ev.BackupID()] = true
			mu.Unlock()
			return nil
		})
	pub := eventstest.NewPipeline(js)
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			if _, _, err := pub.Publish(t.Context(), &events.BackupRequested{BackupRef: events.BackupRef{BackupID: fmt.Sprintf("bk-%d", i), Workload: redis}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func() (int, int, int) {
		mu.Lock()
		defer mu.Unlock()
		return running, top, len(handled)
	}
	publish(0, 6)
	eventstest.Eventually(t, 10*time.Second, "two handlers running", func() bool { r, _, _ := count(); return r == 2 })
	eventstest.Consistently(t, 200*time.Millisecond, "never more than two at once", func() bool { _, m, _ := count(); return m <= 2 })
	close(release)
	eventstest.Eventually(t, 10*time.Second, "all six handled", func() bool { _, _, n := count(); return n == 6 })
	publish(6, 10)
	eventstest.Eventually(t, 10*time.Second, "the next four handled", func() bool { _, _, n := count(); return n == 10 })
	if _, m, _ := count(); m > 2 {
		t.Errorf("%d handlers ran at once, want at most 2", m)
	}
}
