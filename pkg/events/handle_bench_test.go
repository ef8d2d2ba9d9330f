package events

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
)

// deliveredMsg is a delivered message without a server: settling it only
// counts, so BenchmarkHandle times the consumer's own work per event.
type deliveredMsg struct {
	msg     *nats.Msg
	meta    jetstream.MsgMetadata
	settled int
}

func (m *deliveredMsg) Metadata() (*jetstream.MsgMetadata, error) { md := m.meta; return &md, nil }
func (m *deliveredMsg) Data() []byte                              { return m.msg.Data }
func (m *deliveredMsg) Headers() nats.Header                      { return m.msg.Header }
func (m *deliveredMsg) Subject() string                           { return m.msg.Subject }
func (m *deliveredMsg) Reply() string                             { return "" }
func (m *deliveredMsg) Ack() error                                { m.settled++; return nil }
func (m *deliveredMsg) DoubleAck(context.Context) error           { m.settled++; return nil }
func (m *deliveredMsg) Nak() error                                { m.settled++; return nil }
func (m *deliveredMsg) NakWithDelay(time.Duration) error          { m.settled++; return nil }
func (m *deliveredMsg) InProgress() error                         { return nil }
func (m *deliveredMsg) Term() error                               { m.settled++; return nil }
func (m *deliveredMsg) TermWithReason(string) error               { m.settled++; return nil }

// BenchmarkHandle is the consumer side of a hop without a server: trace
// context, decoding, the span, the heartbeat timer, the handler and the
// settlement of one delivered BackupRequested.
func BenchmarkHandle(b *testing.B) {
	w := Workload{Cluster: "bench", Namespace: "bench", Kind: "deployment", Name: "db"}
	ev, err := NewEvent(RoleScheduler.Source(), &BackupRequested{BackupRef: BackupRef{BackupID: NewBackupID(), Workload: w}, RequestedBy: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	encoded, err := Encode(ev)
	if err != nil {
		b.Fatal(err)
	}
	handled := 0
	c := &Consumer{
		cfg:     ConsumerConfig{Durable: "bench", Kinds: []Kind{KindRequested}}.withDefaults(),
		handler: func(context.Context, Event) error { handled++; return nil },
		log:     slog.New(slog.NewJSONHandler(io.Discard, nil)),
		tracer:  otel.GetTracerProvider().Tracer(instrumentationName),
	}
	msg := &deliveredMsg{msg: encoded, meta: jetstream.MsgMetadata{NumDelivered: 1}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c.handle(ctx, msg)
	}
	if handled != b.N || msg.settled != b.N {
		b.Fatalf("handled %d, settled %d of %d", handled, msg.settled, b.N)
	}
}
