package eventstest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// NewCluster runs n JetStream nodes on loopback (a cluster needs three or
// five), each shut down at the end of the test unless the test did first.
func NewCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	ports := make([]int, n)
	var routes []string
	for i := range ports {
		ports[i] = FreePort(t)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[i]))
	}
	var nodes []*server.Server
	for i, p := range ports {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: p},
		}
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatalf("node %d not ready", i)
		}
		t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
		nodes = append(nodes, ns)
	}
	return nodes
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ClientURLs lists the nodes' client URLs, in order.
func ClientURLs(nodes []*server.Server) []string {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.ClientURL()
	}
	return urls
}

// ClusterStream sets up the bus at R3 (events.Setup: the backup event
// stream, the shared durables, the buckets) through js once the cluster has
// formed (it refuses until then), failing the test after 30s.
func ClusterStream(t testing.TB, js jetstream.JetStream) jetstream.Stream {
	t.Helper()
	var stream jetstream.Stream
	Eventually(t, 30*time.Second, "an R3 stream (cluster formed)", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		var err error
		if err := events.Setup(ctx, js, events.SetupConfig{Stream: events.StreamConfig{Replicas: 3}}, nil); err != nil {
			return false
		}
		stream, err = js.Stream(ctx, events.DefaultStream)
		return err == nil
	})
	return stream
}
