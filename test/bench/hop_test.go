package bench_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/test/bench/stats"
)

// BenchmarkHop measures one hop, publish -> handler entered, through
// pkg/events (Publisher and Consumer, CloudEvents encoding, tracing with the
// default no-op provider, DoubleAck) and through raw nats.go (PublishMsg,
// explicit-ack pull Consume) on the same embedded server. Each iteration
// runs one hop of each, alternately, so a busy machine slows both alike;
// ns/op is the time of the pair.
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
	evHop := func() time.Duration {
		start := time.Now()
		if _, _, err := pub.Publish(ctx, &events.BackupRequested{BackupRef: events.BackupRef{BackupID: events.NewBackupID(), Workload: w}, RequestedBy: "bench"}); err != nil {
			b.Fatal(err)
		}
		return (<-evGot).Sub(start)
	}
	for i := range 50 { // warm up both paths
		rawHop(-1 - i)
		evHop()
	}

	raw := make([]time.Duration, 0, b.N)
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
	}
	b.StopTimer()
	r50, r99 := stats.Percentile(raw, 50), stats.Percentile(raw, 99)
	e50, e99 := stats.Percentile(ev, 50), stats.Percentile(ev, 99)
	b.ReportMetric(stats.Micros(r50), "raw-p50-us")
	b.ReportMetric(stats.Micros(r99), "raw-p99-us")
	b.ReportMetric(stats.Micros(e50), "events-p50-us")
	b.ReportMetric(stats.Micros(e99), "events-p99-us")
	b.ReportMetric(float64(e50)/float64(r50), "p50-ratio")
	b.ReportMetric(float64(e99)/float64(r99), "p99-ratio")
}
