package notify_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/services/notifier/notify"
)

var redis = events.Workload{Cluster: "dev", Namespace: "shop", Kind: events.KindDeployment, Name: "redis"}

func ref(id string) events.BackupRef { return events.BackupRef{BackupID: id, Workload: redis} }

// recorder is a Notifier that remembers every call; fail, when set, decides
// the error of the n-th call (from 1) for an event.
type recorder struct {
	mu    sync.Mutex
	calls map[string]int
	fail  func(ev events.Event, n int) error
}

func (r *recorder) Notify(_ context.Context, ev events.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[ev.CloudEvent.ID()]++
	if r.fail != nil {
		return r.fail(ev, r.calls[ev.CloudEvent.ID()])
	}
	return nil
}

func (r *recorder) snapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.calls {
		out[k] = v
	}
	return out
}

// run starts a notifier service over n and stops it at the end of the test.
func run(t *testing.T, js jetstream.JetStream, n notify.Notifier) {
	t.Helper()
	cfg := notify.Config{Common: service.Common{ShutdownTimeout: 5 * time.Second}}
	svc := notify.New(cfg, n, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, js) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	})
}

// waitSettled polls until the notifier's consumer has made want deliveries
// and settled every one: nothing pending, nothing awaiting an ack or a
// redelivery.
func waitSettled(t *testing.T, js jetstream.JetStream, want uint64) {
	t.Helper()
	eventstest.Eventually(t, 10*time.Second, "notifier consumer settled", func() bool {
		c, err := js.Consumer(t.Context(), events.DefaultStream, notify.Durable)
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.Delivered.Consumer >= want
	})
}

func publish(t *testing.T, pub *eventstest.Pipeline, payloads ...events.Payload) []events.Event {
	t.Helper()
	var out []events.Event
	for _, p := range payloads {
		ev, dup, err := pub.Publish(t.Context(), p)
		if err != nil || dup {
			t.Fatalf("publish %T: dup=%v err=%v", p, dup, err)
		}
		out = append(out, ev)
	}
	return out
}

func TestNotifiesTerminalEventsOnly(t *testing.T) {
	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	rec := &recorder{}
	now := time.Now().UTC()
	sent := publish(t, eventstest.NewPipeline(js),
		// bk-1 froze the application, the snapshot failed, the post-hook ran.
		&events.Quiesced{BackupRef: ref("bk-1"), QuiescedAt: now, Blueprint: "redis-hooks"},
		&events.BackupFailed{BackupRef: ref("bk-1"), Step: events.StepSnapshot, Reason: "csi driver timed out", ResumePending: true},
		&events.Resumed{BackupRef: ref("bk-1"), ResumedAt: now, Reason: events.ResumeAfterFailure, FrozenFor: events.Duration(2 * time.Second)},
		// bk-2 was refused: nothing was frozen.
		&events.BackupFailed{BackupRef: ref("bk-2"), Step: events.StepRequest, Reason: "workload not found"},
		// bk-3 succeeded.
		&events.Resumed{BackupRef: ref("bk-3"), ResumedAt: now, Reason: events.ResumeAfterSnapshot, Succeeded: true, FrozenFor: events.Duration(1500 * time.Millisecond)},
	)
	run(t, js, rec)
	waitSettled(t, js, 4) // the Quiesced is not the notifier's

	got := rec.snapshot()
	want := map[string]int{}
	for _, ev := range sent {
		if events.IsTerminal(ev) {
			want[ev.CloudEvent.ID()] = 1
		}
	}
	if len(want) != 3 {
		t.Fatalf("test publishes %d terminal events, want 3", len(want))
	}
	if !maps.Equal(got, want) {
		t.Errorf("notified %v, want %v", got, want)
	}
}

// A failed notification is retried; one that can never succeed is not.
func TestNotifyErrors(t *testing.T) {
	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	rec := &recorder{fail: func(ev events.Event, n int) error {
		switch ev.BackupID() {
		case "bk-flaky":
			if n == 1 {
				return errors.New("slack: 503")
			}
		case "bk-bad":
			return events.Permanent(errors.New("slack: channel not found"))
		}
		return nil
	}}
	sent := publish(t, eventstest.NewPipeline(js),
		&events.Resumed{BackupRef: ref("bk-flaky"), Reason: events.ResumeAfterSnapshot, Succeeded: true},
		&events.Resumed{BackupRef: ref("bk-bad"), Reason: events.ResumeAfterSnapshot, Succeeded: true},
	)
	run(t, js, rec)
	waitSettled(t, js, 3) // two events, one of them delivered twice

	want := map[string]int{sent[0].CloudEvent.ID(): 2, sent[1].CloudEvent.ID(): 1}
	if got := rec.snapshot(); !maps.Equal(got, want) {
		t.Errorf("Notify calls %v, want %v", got, want)
	}
}
