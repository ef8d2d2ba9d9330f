package events_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

// A client's Wait (what `freezeframe backup --wait` and `events --follow`
// run on) survives the loss of the node it is attached to: it sees the
// backup end through another node.
func TestWaitSurvivesTheLossOfItsNode(t *testing.T) {
	nodes := eventstest.NewCluster(t, 3)
	urls := eventstest.ClientURLs(nodes)
	admin, err := nats.Connect(strings.Join(urls, ","))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	adminJS, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	stream := eventstest.ClusterStream(t, adminJS)
	// The worst node to lose: the stream's leader, with the waiter attached
	// to it (and its consumer placed on it).
	var lost int
	eventstest.Eventually(t, 30*time.Second, "a stream leader", func() bool {
		info, err := stream.Info(t.Context())
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
			return false
		}
		for i, n := range nodes {
			if n.Name() == info.Cluster.Leader {
				lost = i
				return true
			}
		}
		return false
	})
	order := []string{urls[lost]}
	var others []string
	for i, u := range urls {
		if i != lost {
			others = append(others, u)
		}
	}
	order = append(order, others...)
	waiterConn, err := nats.Connect(strings.Join(order, ","), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(waiterConn.Close)
	pubConn, err := nats.Connect(strings.Join(others, ","), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pubConn.Close)
	pubJS, err := jetstream.New(pubConn)
	if err != nil {
		t.Fatal(err)
	}
	client, err := events.NewClient(waiterConn)
	if err != nil {
		t.Fatal(err)
	}
	pub := eventstest.NewPipeline(pubJS)
	ref := events.BackupRef{BackupID: "bk-failover", Workload: events.Workload{Cluster: "c", Namespace: "shop", Kind: events.KindDeployment, Name: "redis"}}
	publish := func(p events.Payload) {
		t.Helper()
		eventstest.Eventually(t, 30*time.Second, "publish "+p.EventType(), func() bool {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			_, _, err := pub.Publish(ctx, p)
			return err == nil
		})
	}
	publish(&events.BackupRequested{BackupRef: ref})
	publish(&events.Quiesced{BackupRef: ref, QuiescedAt: time.Now()})

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	seen := make(chan events.Kind, 16)
	done := make(chan error, 1)
	var last events.Event
	go func() {
		var err error
		last, err = client.Wait(ctx, ref.BackupID, func(e events.Event) { seen <- e.Kind() })
		done <- err
	}()
	for _, want := range []events.Kind{events.KindRequested, events.KindQuiesced} {
		select {
		case k := <-seen:
			if k != want {
				t.Fatalf("saw %s, want %s", k, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("the waiter did not see %s", want)
		}
	}
	if url := waiterConn.ConnectedUrl(); url != urls[lost] {
		t.Fatalf("the waiter is attached to %s, want the leader (%s)", url, urls[lost])
	}
	nodes[lost].Shutdown()
	nodes[lost].WaitForShutdown()
	publish(&events.Snapshotted{BackupRef: ref, Mode: events.SnapshotModeVolume, Snapshots: []events.Snapshot{{Name: "s", Namespace: "shop", PVC: "data", CutAt: time.Now()}}})
	publish(&events.Resumed{BackupRef: ref, ResumedAt: time.Now(), Reason: events.ResumeAfterSnapshot, Succeeded: true})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait after its node was lost: %v", err)
		}
		if last.Kind() != events.KindResumed {
			t.Fatalf("Wait returned %s, want resumed", last.Kind())
		}
	case <-ctx.Done():
		t.Fatal("Wait never saw the backup end after its node was lost")
	}
	// List (status, the catalog, lookups) answers too, within its context.
	var listed []events.Event
	eventstest.Eventually(t, 30*time.Second, "List after the node was lost", func() bool {
		lctx, lcancel := context.WithTimeout(ctx, 3*time.Second)
		defer lcancel()
		listed, err = client.List(lctx, events.Filter{BackupID: ref.BackupID}, events.SubscribeOptions{FromStart: true})
		return err == nil
	})
	if len(listed) != 4 || listed[3].Kind() != events.KindResumed {
		t.Fatalf("List after the node was lost: %d events, want requested..resumed", len(listed))
	}
}

// A service's durable consumer goes on after the node leading it is lost:
// an event published after the loss is handled. The delay is logged (how
// long a frozen application waits through a failover), not asserted.
func TestConsumerSurvivesTheLossOfItsLeader(t *testing.T) {
	nodes := eventstest.NewCluster(t, 3)
	nc, err := nats.Connect(strings.Join(eventstest.ClientURLs(nodes), ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	eventstest.ClusterStream(t, js)
	handled := make(chan time.Time, 16)
	cons, err := events.NewConsumer(t.Context(), js, events.ConsumerConfig{Durable: "snapshotter", Kinds: []events.Kind{events.KindQuiesced}},
		func(context.Context, events.Event) error { handled <- time.Now(); return nil }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	pub := eventstest.NewPipeline(js)
	publish := func(id string) time.Time {
		t.Helper()
		ref := events.BackupRef{BackupID: id, Workload: events.Workload{Cluster: "c", Namespace: "shop", Kind: events.KindDeployment, Name: "db"}}
		var at time.Time
		eventstest.Eventually(t, 30*time.Second, "publish "+id, func() bool {
			pctx, pcancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer pcancel()
			at = time.Now()
			_, _, err := pub.Publish(pctx, &events.Quiesced{BackupRef: ref, QuiescedAt: time.Now()})
			return err == nil
		})
		return at
	}
	publish("bk-before")
	select {
	case <-handled:
	case <-time.After(20 * time.Second):
		t.Fatal("the consumer handled nothing before the loss")
	}
	info, err := js.Consumer(t.Context(), events.DefaultStream, "snapshotter")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := info.Info(t.Context())
	if err != nil || ci.Cluster == nil {
		t.Fatalf("consumer info: %v", err)
	}
	var lostAt time.Time
	for _, n := range nodes {
		if n.Name() == ci.Cluster.Leader {
			n.Shutdown()
			n.WaitForShutdown()
			lostAt = time.Now()
		}
	}
	at := publish("bk-after")
	select {
	case got := <-handled:
		t.Logf("consumer leader %s lost: an event published %s later was handled %s after its publish (%s after the loss)",
			ci.Cluster.Leader, at.Sub(lostAt).Round(time.Millisecond), got.Sub(at).Round(time.Millisecond), got.Sub(lostAt).Round(time.Millisecond))
	case <-time.After(60 * time.Second):
		t.Fatal("the consumer handled nothing after its leader was lost")
	}
}
