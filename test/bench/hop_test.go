package bench_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
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
// runs one hop of every path, in a shuffled order, so a busy machine slows
// them alike. Besides raw and events: raw-ce carries an encoded event's
// headers and body (the wire format's cost apart from pkg/events' code),
// raw-doubleack settles as pkg/events does, and events-consume is a raw
// publish handled by pkg/events' consumer (the consumer side's share).
// ns/op is the time of the five.
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
	cons, err := events.NewConsumer(ctx, js, events.ConsumerConfig{Owned: true, Durable: "bench", Kinds: []events.Kind{events.KindRequested}},
		func(context.Context, events.Event) error { evGot <- time.Now(); return nil },
		slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = cons.Run(ctx) })
	defer wg.Wait()
	defer cancel()
	pub := events.NewPublisher(js, events.RoleScheduler.Source())
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
	// encodedRequest is a new BackupRequested as pkg/events puts it on the
	// wire, and its event id.
	encodedRequest := func() (*nats.Msg, string) {
		ev, err := events.NewEvent(events.RoleScheduler.Source(), &events.BackupRequested{BackupRef: events.BackupRef{BackupID: events.NewBackupID(), Workload: w}, RequestedBy: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		m, err := events.Encode(ev)
		if err != nil {
			b.Fatal(err)
		}
		return m, ev.CloudEvent.ID()
	}
	protoMsg, _ := encodedRequest()
	rawCEHop := func(i int) time.Duration {
		m := &nats.Msg{Subject: "raw.ce", Header: protoMsg.Header, Data: protoMsg.Data}
		start := time.Now()
		if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(fmt.Sprintf("rawce-%d", i))); err != nil {
			b.Fatal(err)
		}
		return (<-rawGot).Sub(start)
	}
	evHop := func() time.Duration {
		// The request, with its new backup id, exists before the hop, as
		// a handler's next payload does.
		req := &events.BackupRequested{BackupRef: events.BackupRef{BackupID: events.NewBackupID(), Workload: w}, RequestedBy: "bench"}
		start := time.Now()
		if _, _, err := pub.Publish(ctx, req); err != nil {
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
	// A raw publish of an encoded event, handled by pkg/events' consumer:
	// the consumer side's share of the difference, apart from the
	// publisher's.
	rawEventHop := func(int) time.Duration {
		m, id := encodedRequest()
		start := time.Now()
		if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(id)); err != nil {
			b.Fatal(err)
		}
		return (<-evGot).Sub(start)
	}
	hops := []struct {
		metric string
		hop    func(i int) time.Duration
		took   []time.Duration
	}{
		{metric: "raw", hop: rawHop},
		{metric: "events", hop: func(int) time.Duration { return evHop() }},
		{metric: "raw-ce", hop: rawCEHop},
		{metric: "raw-doubleack", hop: rawDHop},
		{metric: "events-consume", hop: rawEventHop},
	}
	for i := range 50 { // warm up every path
		for _, h := range hops {
			h.hop(-1 - i)
		}
	}
	// Each iteration runs one hop of each path in a new order: a hop is
	// slower or faster depending on what the one before it left in flight
	// (a DoubleAck's reply, a fire-and-forget ack), by more than pkg/events
	// adds, so a fixed order would favour some paths. The seed is fixed, so
	// every run sees the same orders.
	order := make([]int, len(hops))
	for i := range order {
		order[i] = i
	}
	shuffle := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		shuffle.Shuffle(len(order), func(x, y int) { order[x], order[y] = order[y], order[x] })
		for _, h := range order {
			hops[h].took = append(hops[h].took, hops[h].hop(i))
		}
	}
	b.StopTimer()
	for _, h := range hops {
		b.ReportMetric(stats.Micros(stats.Percentile(h.took, 50)), h.metric+"-p50-us")
		b.ReportMetric(stats.Micros(stats.Percentile(h.took, 99)), h.metric+"-p99-us")
	}
	raw, ev := hops[0].took, hops[1].took
	b.ReportMetric(float64(stats.Percentile(ev, 50))/float64(stats.Percentile(raw, 50)), "p50-ratio")
	b.ReportMetric(float64(stats.Percentile(ev, 99))/float64(stats.Percentile(raw, 99)), "p99-ratio")
}

// BenchmarkCodec is the CPU side of a hop: encoding an event and decoding
// (and validating) it again, without any server.
func BenchmarkCodec(b *testing.B) {
	w := events.Workload{Cluster: "bench", Namespace: "bench", Kind: "deployment", Name: "db"}
	b.ReportAllocs()
	for b.Loop() {
		ev, err := events.NewEvent(events.RoleScheduler.Source(), &events.BackupRequested{BackupRef: events.BackupRef{BackupID: "bk-0", Workload: w}, RequestedBy: "bench"})
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
