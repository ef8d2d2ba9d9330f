package events_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

// Every role's source passes CheckSource for exactly the kinds the access
// table lets it emit (the CLI's source for what a requester or an operator
// may send), and DecodeMessage agrees.
func TestCheckSourceFollowsTheAccessTable(t *testing.T) {
	ref := events.BackupRef{BackupID: "bk-src", Workload: redis}
	sources := map[string]func(events.Kind) bool{
		events.SourceClient: func(k events.Kind) bool {
			return events.RoleRequester.MayEmit(k) || events.RoleOperator.MayEmit(k)
		},
		"/forged":                 func(events.Kind) bool { return false },
		"/freezeframe/hooker/../": func(events.Kind) bool { return false },
	}
	for _, r := range events.Roles() {
		if r == events.RoleRequester || r == events.RoleOperator {
			sources[r.Source()] = sources[events.SourceClient] // one source, the CLI's
			continue
		}
		sources[r.Source()] = r.MayEmit
	}
	for source, allowed := range sources {
		for _, k := range events.Kinds() {
			ev, err := events.NewEvent(source, validPayload(k, ref))
			if err != nil {
				t.Fatal(err)
			}
			err = events.CheckSource(ev)
			if allowed(k) != (err == nil) {
				t.Errorf("%s from %s: CheckSource = %v, want allowed=%v", k, source, err, allowed(k))
			}
			m, err := events.Encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			_, decodeErr := events.DecodeMessage(m.Subject, m.Header, m.Data)
			if allowed(k) != (decodeErr == nil) || (decodeErr != nil && !errors.Is(decodeErr, events.ErrForbiddenSource)) {
				t.Errorf("%s from %s: DecodeMessage = %v, want allowed=%v", k, source, decodeErr, allowed(k))
			}
		}
	}
}

// The refusal names the kind, the source and who may emit it, and is
// permanent: redelivering a forged event cannot make it genuine.
func TestForbiddenSourceSaysWhoMayEmit(t *testing.T) {
	ev, err := events.NewEvent("/x", &events.Resumed{BackupRef: events.BackupRef{BackupID: "bk-1", Workload: redis}, Reason: events.ResumeAfterSnapshot, Succeeded: true})
	if err != nil {
		t.Fatal(err)
	}
	err = events.CheckSource(ev)
	var se *events.SourceError
	if !errors.As(err, &se) || se.Kind != events.KindResumed || se.Source != "/x" {
		t.Fatalf("CheckSource = %#v", err)
	}
	const want = "event kind resumed from source /x: only /freezeframe/hooker may emit it (event dev.shop.deployment.redis_cache.bk-1.resumed)"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if !events.IsPermanent(err) || !errors.Is(err, events.ErrUndecodable) {
		t.Errorf("error %v is not a permanent ErrUndecodable", err)
	}
}

// A publisher speaking for a role that may not emit a kind is refused
// before anything reaches the stream.
func TestPublisherRefusesKindsItsSourceMayNotEmit(t *testing.T) {
	_, js := eventstest.NewServer(t).JetStream()
	ref := events.BackupRef{BackupID: "bk-cli", Workload: redis}
	_, _, err := events.NewPublisher(js, events.RoleOperator.Source()).Publish(t.Context(), &events.Resumed{BackupRef: ref, Reason: events.ResumeAfterSnapshot, Succeeded: true})
	if !errors.Is(err, events.ErrForbiddenSource) {
		t.Fatalf("publish Resumed as the CLI: %v, want ErrForbiddenSource", err)
	}
	// Counted on the stream itself: the readers would hide a forged event.
	stream, err := js.Stream(t.Context(), events.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("stream holds %d messages, want none", info.State.Msgs)
	}
	if _, _, err := events.NewPublisher(js, events.RoleOperator.Source()).Publish(t.Context(), &events.UnlockRequested{BackupRef: ref, Reason: events.ResumeOperator}); err != nil {
		t.Fatalf("publish UnlockRequested as an operator: %v", err)
	}
}

// A consumer counts what it terminates unread by reason, so a forged
// publisher shows on a dashboard: a forged Resumed is one forbidden-source.
func TestConsumerCountsForgedEvents(t *testing.T) {
	_, js := eventstest.NewServer(t).JetStream()
	reader := sdkmetric.NewManualReader()
	handled := make(chan events.Event, 1)
	c, err := events.NewConsumer(t.Context(), js, events.ConsumerConfig{Durable: "counted", Kinds: []events.Kind{events.KindResumed}, Owned: true,
		Meters: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))},
		func(_ context.Context, ev events.Event) error { handled <- ev; return nil }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	forged, err := events.NewEvent(events.SourceCLI, &events.Resumed{BackupRef: events.BackupRef{BackupID: "bk-forged", Workload: redis}, Reason: events.ResumeAfterSnapshot, Succeeded: true})
	if err != nil {
		t.Fatal(err)
	}
	m, err := events.Encode(forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	rejected := func() (forbidden, other int64) {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(t.Context(), &rm); err != nil {
			t.Fatal(err)
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				sum, ok := m.Data.(metricdata.Sum[int64])
				if m.Name != events.MetricEventsRejected || !ok {
					continue
				}
				for _, dp := range sum.DataPoints {
					if reason, _ := dp.Attributes.Value("reason"); reason.AsString() == "forbidden-source" {
						forbidden += dp.Value
					} else {
						other += dp.Value
					}
				}
			}
		}
		return forbidden, other
	}
	eventstest.Eventually(t, 10*time.Second, "the forged Resumed counted as forbidden-source", func() bool {
		forbidden, _ := rejected()
		return forbidden == 1
	})
	if _, other := rejected(); other != 0 {
		t.Errorf("%d rejections counted under another reason", other)
	}
	select {
	case ev := <-handled:
		t.Fatalf("the forged Resumed reached the handler: %+v", ev.Payload)
	default:
	}
}

// A forged event stored after the genuine one on its subject does not hide
// it from Lookup (a takeover rebuilds its plan from the stored request); a
// subject holding only forgeries has no event, and says they were refused.
func TestLookupPassesOverForgedEvents(t *testing.T) {
	_, js := eventstest.NewServer(t).JetStream()
	ref := events.BackupRef{BackupID: "bk-look", Workload: redis}
	forge := func(id, blueprint string) {
		t.Helper()
		ev, err := events.NewEvent("/forged", &events.BackupRequested{BackupRef: ref, RequestedBy: "cli", Blueprint: blueprint}, events.WithID(id))
		if err != nil {
			t.Fatal(err)
		}
		m, err := events.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	forge("forged-0", "evil")
	if _, err := events.Lookup(t.Context(), js, "", events.KindRequested, ref); !errors.Is(err, events.ErrNoEvent) || !errors.Is(err, events.ErrForbiddenSource) {
		t.Fatalf("only a forged request stored: Lookup = %v, want ErrNoEvent and ErrForbiddenSource", err)
	}
	if _, _, err := events.NewPublisher(js, events.RoleScheduler.Source()).Publish(t.Context(), &events.BackupRequested{BackupRef: ref, RequestedBy: "cli", Blueprint: "redis-hooks"}); err != nil {
		t.Fatal(err)
	}
	forge("forged-1", "evil")
	forge("forged-2", "evil")
	ev, err := events.Lookup(t.Context(), js, "", events.KindRequested, ref)
	if err != nil {
		t.Fatal(err)
	}
	if r := ev.Payload.(*events.BackupRequested); r.Blueprint != "redis-hooks" || ev.CloudEvent.Source() != events.RoleScheduler.Source() {
		t.Fatalf("Lookup returned %s from %s, want the scheduler's request", r.Blueprint, ev.CloudEvent.Source())
	}
}
