package bench_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/test/bench/stats"
)

// BenchmarkHop measures one hop, publish -> handler entered, through
// pkg/events (Publisher and Consumer, CloudEvents encoding, tracing with the
// default no-op provider, DoubleAck) and through raw nats.go (PublishMsg,
// explicit-ack pull Consume) on the same embedded server. Each iteration
// runs one hop of each, alternately, so a busy machine slows both alike,
// plus a raw hop carrying an encoded event's headers and body (raw-ce), which
// separates the wire format's cost from pkg/events' code, and a raw hop
// settled with DoubleAck like pkg/events; ns/op is the time of the four.
func BenchmarkHop(b *testing.B) {
	srv := eventstest.NewServer(b)
	_, js := srv.JetStream()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Raw: a stream shaped like the event stream, file storage, one durable
	// explicit-ack pull consumer.
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage, Duplicates: time.Hour}); err != nil {
		b.Fatal(err)
	}
	rawCons, err := js.CreateOrUpdateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 10 * time.Second, MaxAckPending: 1024})
	if err != nil {
		b.Fatal(err)
	}
	rawGot := make(chan time.Time, 1)
	rawCC, err := rawCons.Consume(func(m jetstream.Msg) {
		rawGot <- time.Now()
		_ = m.Ack()
	}, jetstream.PullMaxMessages(512))
	if err != nil {
		b.Fatal(err)
	}
	defer rawCC.Stop()

	// Raw with DoubleAck, as pkg/events settles: an ack that waits for the
	// server's confirmation, a request/reply in flight during the next hop.
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "RAWD", Subjects: []string{"rawd.>"}, Storage: jetstream.FileStorage, Duplicates: time.Hour}); err != nil {
		b.Fatal(err)
	}
	rawDCons, err := js.CreateOrUpdateConsumer(ctx, "RAWD", jetstream.ConsumerConfig{Durable: "rawd", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 10 * time.Second, MaxAckPending: 1024})
	if err != nil {
		b.Fatal(err)
	}
	rawDCC, err := rawDCons.Consume(func(m jetstream.Msg) {
		rawGot <- time.Now()
		_ = m.DoubleAck(ctx)
	}, jetstream.PullMaxMessages(512))
	if err != nil {
		b.Fatal(err)
	}
	defer rawDCC.Stop()

	evGot := make(chan time.Time, 1)
	cons, err := events.NewConsumer(ctx, js, events.ConsumerConfig{Durable: "bench", Kinds: []events.Kind{events.KindRequested}},
		func(context.Context, events.Event) error { evGot <- time.Now(); return nil },
		slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = cons.Run(ctx) })
	defer wg.Wait()
	defer cancel()
	pub := events.NewPublisher(js, "/freezeframe/bench")
	w := events.Workload{Cluster: "bench", Namespace: "bench", Kind: "deployment", Name: "db"}
	payload := make([]byte, 256) // about the size of an encoded BackupRequested

	rawHop := func(i int) time.Duration {
		start := time.Now()
		if _, err := js.Publish(ctx, "raw.hop", payload, jetstream.WithMsgID(fmt.Sprintf("raw-%d", i))); err != nil {
			b.Fatal(err)
		}
		return (<-rawGot).Sub(start)
	}
	// Raw, but carrying an encoded event's headers and body: what the wire
	// format costs, apart from pkg/events' code.
	proto, err := events.NewEvent("/freezeframe/bench", &events.BackupRequested{BackupRef: events.BackupRef{BackupID: events.NewBackupID(), Workload: w}, RequestedBy: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	protoMsg, err := events.Encode(proto)
	if err != nil {
		b.Fatal(err)
	}
	rawCEHop := func(i int) time.Duration {
		m := &nats.Msg{Subject: "raw.ce", Header: protoMsg.Header, Data: protoMsg.Data}
		start := time.Now()
		if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(fmt.Sprintf("rawce-%d", i))); err != nil {
			b.Fatal(err)
		}
		return (<-rawGot).Sub(start)
	}
	evHop := func() time.Duration {
		start := time.Now()
		if _, _, err := pub.Publish(ctx, &events.BackupRequested{BackupRef: events.BackupRef{BackupID: events.NewBackupID(), Workload: w}, RequestedBy: "bench"}); err != nil {
			b.Fatal(err)
		}
		return (<-evGot).Sub(start)
	}
	rawDHop := func(i int) time.Duration {
		start := time.Now()
		if _, err := js.Publish(ctx, "rawd.hop", payload, jetstream.WithMsgID(fmt.Sprintf("rawd-%d", i))); err != nil {
			b.Fatal(err)
		}
		return (<-rawGot).Sub(start)
	}
	for i := range 50 { // warm up every path
		rawDHop(-1 - i)
		rawHop(-1 - i)
		rawCEHop(-1 - i)
		evHop()
	}

	raw := make([]time.Duration, 0, b.N)
	rawCE := make([]time.Duration, 0, b.N)
	rawD := make([]time.Duration, 0, b.N)
	ev := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			raw = append(raw, rawHop(i))
			ev = append(ev, evHop())
		} else {
			ev = append(ev, evHop())
			raw = append(raw, rawHop(i))
		}
		rawCE = append(rawCE, rawCEHop(i))
		rawD = append(rawD, rawDHop(i))
	}
	b.StopTimer()
	r50, r99 := stats.Percentile(raw, 50), stats.Percentile(raw, 99)
	e50, e99 := stats.Percentile(ev, 50), stats.Percentile(ev, 99)
	b.ReportMetric(stats.Micros(r50), "raw-p50-us")
	b.ReportMetric(stats.Micros(r99), "raw-p99-us")
	b.ReportMetric(stats.Micros(e50), "events-p50-us")
	b.ReportMetric(stats.Micros(e99), "events-p99-us")
	b.ReportMetric(stats.Micros(stats.Percentile(rawCE, 50)), "raw-ce-p50-us")
	b.ReportMetric(stats.Micros(stats.Percentile(rawCE, 99)), "raw-ce-p99-us")
	b.ReportMetric(stats.Micros(stats.Percentile(rawD, 50)), "raw-doubleack-p50-us")
	b.ReportMetric(stats.Micros(stats.Percentile(rawD, 99)), "raw-doubleack-p99-us")
	b.ReportMetric(float64(e50)/float64(r50), "p50-ratio")
	b.ReportMetric(float64(e99)/float64(r99), "p99-ratio")
}

// BenchmarkCodec is the CPU side of a hop: encoding an event and decoding
// (and validating) it again, without any server.
func BenchmarkCodec(b *testing.B) {
	w := events.Workload{Cluster: "bench", Namespace: "bench", Kind: "deployment", Name: "db"}
	b.ReportAllocs()
	for b.Loop() {
		ev, err := events.NewEvent("/freezeframe/bench", &events.BackupRequested{BackupRef: events.BackupRef{BackupID: "bk-0", Workload: w}, RequestedBy: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		m, err := events.Encode(ev)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := events.Decode(m.Header, m.Data); err != nil {
			b.Fatal(err)
		}
	}
}
