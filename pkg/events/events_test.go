package events_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

var redis = events.Workload{Cluster: "dev", Namespace: "shop", Kind: events.KindDeployment, Name: "redis.cache"}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// runConsumer starts a consumer of the test's own and stops it at the end
// of the test.
func runConsumer(t *testing.T, js jetstream.JetStream, cfg events.ConsumerConfig, h events.Handler) {
	t.Helper()
	cfg.Owned = true
	ctx, cancel := context.WithCancel(context.Background())
	c, err := events.NewConsumer(t.Context(), js, cfg, h, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func TestRoundTripThroughStream(t *testing.T) {
	srv := eventstest.NewServer(t)
	nc, js := srv.JetStream()
	got := make(chan events.Event, 1)
	runConsumer(t, js, events.ConsumerConfig{Durable: "t", Kinds: []events.Kind{events.KindQuiesced}}, func(_ context.Context, ev events.Event) error {
		got <- ev
		return nil
	})
	pub := eventstest.NewPipeline(js)
	at := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	sent, dup, err := pub.Publish(t.Context(), &events.Quiesced{
		BackupRef:  events.BackupRef{BackupID: "bk-1", Workload: redis},
		QuiescedAt: at, Blueprint: "redis-hooks",
		Hooks: []events.HookRun{{Phase: "pause", Pod: "redis-0", Container: "redis", Duration: events.Duration(12 * time.Millisecond)}},
	})
	if err != nil || dup {
		t.Fatalf("publish: dup=%v err=%v", dup, err)
	}
	select {
	case ev := <-got:
		q, ok := ev.Payload.(*events.Quiesced)
		if !ok {
			t.Fatalf("payload %T", ev.Payload)
		}
		if ev.CloudEvent.ID() != sent.CloudEvent.ID() || ev.BackupID() != "bk-1" || ev.Workload() != redis {
			t.Errorf("identity: id %s backup %s workload %+v", ev.CloudEvent.ID(), ev.BackupID(), ev.Workload())
		}
		if !q.QuiescedAt.Equal(at) || q.Hooks[0].Duration.Std() != 12*time.Millisecond || q.Blueprint != "redis-hooks" {
			t.Errorf("payload changed in transit: %+v", q)
		}
		if ev.CloudEvent.Extensions()[events.ExtCluster] != "dev" {
			t.Errorf("cluster extension: %v", ev.CloudEvent.Extensions())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("event not delivered")
	}
	// The subject selects by kind, cluster, namespace, kind, name (dot escaped), backup.
	stream, err := js.Stream(t.Context(), events.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(t.Context(), "freezeframe.backup.quiesced.dev.shop.deployment.redis_cache.bk-1")
	if err != nil {
		t.Fatalf("event not on its documented subject: %v", err)
	}
	if msg.Header.Get("ce-type") != events.TypeQuiesced || msg.Header.Get("Nats-Msg-Id") != "dev.shop.deployment.redis_cache.bk-1.quiesced" {
		t.Errorf("binary-mode headers: %v", msg.Header)
	}
	_ = nc
}

func TestDuplicatePublishIsDropped(t *testing.T) {
	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	pub := eventstest.NewPipeline(js)
	req := &events.BackupRequested{BackupRef: events.BackupRef{BackupID: "bk-dup", Workload: redis}}
	if _, dup, err := pub.Publish(t.Context(), req); err != nil || dup {
		t.Fatalf("first publish: dup=%v err=%v", dup, err)
	}
	if _, dup, err := pub.Publish(t.Context(), req); err != nil || !dup {
		t.Fatalf("second publish: dup=%v err=%v, want duplicate", dup, err)
	}
	info, err := js.Stream(t.Context(), events.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
}

func TestMalformedMessagesAreTerminatedAndConsumerGoesOn(t *testing.T) {
	srv := eventstest.NewServer(t)
	nc, js := srv.JetStream()
	var mu sync.Mutex
	var handled []string
	runConsumer(t, js, events.ConsumerConfig{Durable: "t", Kinds: []events.Kind{events.KindRequested}, AckWait: time.Second}, func(_ context.Context, ev events.Event) error {
		mu.Lock()
		defer mu.Unlock()
		handled = append(handled, ev.BackupID())
		return nil
	})
	subject := "freezeframe.backup.requested.dev.shop.deployment.redis.bk-x"
	bad := []*nats.Msg{
		{Subject: subject, Data: []byte("not json"), Header: nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"a"}, "ce-source": {"/x"}, "ce-type": {events.TypeBackupRequested}}},
		{Subject: subject, Data: []byte(`{}`), Header: nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"b"}, "ce-source": {"/x"}, "ce-type": {"com.example.unknown.v1"}}},
		{Subject: subject, Data: []byte(`{"backupId":"bk-x"}`), Header: nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"c"}, "ce-source": {"/x"}, "ce-type": {events.TypeBackupRequested}}},
		{Subject: subject, Data: []byte(`{}`)},
	}
	for _, m := range bad {
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	pub := eventstest.NewPipeline(js)
	if _, _, err := pub.Publish(t.Context(), &events.BackupRequested{BackupRef: events.BackupRef{BackupID: "bk-good", Workload: redis}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(t.Context(), events.DefaultStream, "t")
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 10*time.Second, "one event handled and every message settled", func() bool {
		info, err := cons.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		n := len(handled)
		mu.Unlock()
		return n == 1 && info.NumAckPending == 0 && info.NumPending == 0 && info.NumRedelivered == 0
	})
	if handled[0] != "bk-good" {
		t.Fatalf("handled %v", handled)
	}
	_ = nc
}

func TestTransientFailureIsRedelivered(t *testing.T) {
	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	var calls atomic.Int32
	attempts := make(chan int, 3)
	runConsumer(t, js, events.ConsumerConfig{
		Durable: "t", Kinds: []events.Kind{events.KindRequested},
		RetryDelay: func(int) time.Duration { return 50 * time.Millisecond },
	}, func(ctx context.Context, ev events.Event) error {
		d, _ := events.DeliveryOf(ctx)
		attempts <- d.Attempt
		if calls.Add(1) == 1 {
			return errors.New("apiserver unavailable")
		}
		return nil
	})
	pub := eventstest.NewPipeline(js)
	if _, _, err := pub.Publish(t.Context(), &events.BackupRequested{BackupRef: events.BackupRef{BackupID: "bk-r", Workload: redis}}); err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= 2; want++ {
		select {
		case got := <-attempts:
			if got != want {
				t.Fatalf("attempt %d, want %d", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("attempt %d never came", want)
		}
	}
	select {
	case a := <-attempts:
		t.Fatalf("unexpected attempt %d after success", a)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestPermanentErrorIsNotRetried(t *testing.T) {
	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	var calls atomic.Int32
	runConsumer(t, js, events.ConsumerConfig{Durable: "t", Kinds: []events.Kind{events.KindRequested}, RetryDelay: func(int) time.Duration { return 10 * time.Millisecond }},
		func(context.Context, events.Event) error {
			calls.Add(1)
			return events.Permanent(errors.New("deployment shop/redis not found"))
		})
	pub := eventstest.NewPipeline(js)
	if _, _, err := pub.Publish(t.Context(), &events.BackupRequested{BackupRef: events.BackupRef{BackupID: "bk-p", Workload: redis}}); err != nil {
		t.Fatal(err)
	}
	cons, _ := js.Consumer(t.Context(), events.DefaultStream, "t")
	eventstest.Eventually(t, 5*time.Second, "the event settled", func() bool {
		info, err := cons.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.AckFloor.Stream == 1 && info.NumAckPending == 0
	})
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler called %d times, want 1", n)
	}
}

func TestTraceContextCrossesAHop(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	handled := make(chan struct{})
	pub := eventstest.NewPipeline(js)
	runConsumer(t, js, events.ConsumerConfig{Durable: "t", Kinds: []events.Kind{events.KindRequested}}, func(ctx context.Context, ev events.Event) error {
		// The next hop publishes from the handler's context.
		_, _, err := pub.Publish(ctx, &events.BackupFailed{BackupRef: ev.Payload.Ref(), Step: events.StepResolve, Reason: "test"})
		close(handled)
		return err
	})
	ctx, root := tp.Tracer("test").Start(t.Context(), "request")
	if _, _, err := pub.Publish(ctx, &events.BackupRequested{BackupRef: events.BackupRef{BackupID: "bk-t", Workload: redis}}); err != nil {
		t.Fatal(err)
	}
	root.End()
	<-handled
	var names map[string]bool
	eventstest.Eventually(t, 5*time.Second, "every hop's span in the root trace", func() bool {
		names = map[string]bool{}
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID() == root.SpanContext().TraceID() {
				names[s.Name()] = true
			}
		}
		return names["publish requested"] && names["process requested"] && names["publish failed"]
	})
}

func TestClientWaitReturnsTerminalEvent(t *testing.T) {
	srv := eventstest.NewServer(t)
	nc, js := srv.JetStream()
	client, err := events.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := client.PublishBackupRequested(t.Context(), events.BackupRequested{BackupRef: events.BackupRef{Workload: redis}})
	if err != nil {
		t.Fatal(err)
	}
	id := ev.BackupID()
	pub := eventstest.NewPipeline(js)
	ref := events.BackupRef{BackupID: id, Workload: redis}
	// Another backup's events must not end the wait.
	if _, _, err := pub.Publish(t.Context(), &events.Resumed{BackupRef: events.BackupRef{BackupID: "bk-other", Workload: redis}, Reason: events.ResumeAfterSnapshot, Succeeded: true}); err != nil {
		t.Fatal(err)
	}
	go func() {
		pub.Publish(context.Background(), &events.Quiesced{BackupRef: ref, QuiescedAt: time.Now()})
		pub.Publish(context.Background(), &events.BackupFailed{BackupRef: ref, Step: events.StepSnapshot, Reason: "no class", ResumePending: true})
		pub.Publish(context.Background(), &events.Resumed{BackupRef: ref, Reason: events.ResumeAfterFailure})
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var seen []events.Kind
	last, err := client.Wait(ctx, id, func(e events.Event) { seen = append(seen, e.Kind()) })
	if err != nil {
		t.Fatal(err)
	}
	want := []events.Kind{events.KindRequested, events.KindQuiesced, events.KindFailed, events.KindResumed}
	if len(seen) != len(want) {
		t.Fatalf("seen %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("seen %v, want %v", seen, want)
		}
	}
	if last.Kind() != events.KindResumed || events.Succeeded(last) {
		t.Fatalf("terminal %s succeeded=%v, want a failed resume", last.Kind(), events.Succeeded(last))
	}
}
