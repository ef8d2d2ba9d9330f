package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// NATSCluster is a JetStream cluster of nats-server processes on loopback.
type NATSCluster struct {
	Nodes []*NATSServer
	ids   harness.Identities
}

// StartNATSCluster starts n nodes (three, or five) routed to each other, each
// with its store under dir/<name>, and waits until JetStream answers on
// every node (a meta leader is elected).
func StartNATSCluster(ctx context.Context, bin, dir string, n int, ids harness.Identities) (*NATSCluster, error) {
	ports := make([]int, 2*n)
	for i := range ports {
		p, err := sandbox.FreePort()
		if err != nil {
			return nil, fmt.Errorf("start nats cluster: %w", err)
		}
		ports[i] = p
	}
	var routes []string
	for i := range n {
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(ports[n+i]))
	}
	conf, err := writeAuthConfig(dir, ids)
	if err != nil {
		return nil, fmt.Errorf("start nats cluster: %w", err)
	}
	c := &NATSCluster{ids: ids}
	for i := range n {
		name := fmt.Sprintf("nats-%d", i)
		store := filepath.Join(dir, name)
		if err := os.MkdirAll(store, 0o755); err != nil {
			return nil, fmt.Errorf("start nats cluster: %w", err)
		}
		c.Nodes = append(c.Nodes, &NATSServer{Port: ports[i], ids: ids, Proc: &Proc{
			Name: name, Bin: bin, Log: filepath.Join(dir, name+".log"), Env: os.Environ(),
			Args: []string{"--config", conf, "--jetstream", "--store_dir", store, "--addr", "127.0.0.1", "--port", strconv.Itoa(ports[i]),
				"--server_name", name, "--cluster_name", "chaos", "--cluster", routes[i], "--routes", strings.Join(routes, ",")},
		}})
	}
	for _, s := range c.Nodes {
		if err := s.Start(); err != nil {
			c.Stop(ctx)
			return nil, err
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, s := range c.Nodes {
		wg.Go(func() { errs[i] = s.WaitReady(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Stop(ctx)
		return nil, fmt.Errorf("start nats cluster: %w", err)
	}
	// Each node answers before the cluster has elected a meta leader, which
	// takes seconds: until then creating a replicated stream times out.
	if err := c.waitMetaLeader(ctx); err != nil {
		c.Stop(ctx)
		return nil, err
	}
	return c, nil
}

// waitMetaLeader waits until a stream at R3 can be created (and deletes it).
func (c *NATSCluster) waitMetaLeader(ctx context.Context) error {
	nc, err := connectAll(c.URL(), c.ids)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("wait for the meta leader: %w", err)
	}
	return poll(ctx, 60*time.Second, 200*time.Millisecond, "a JetStream meta leader", func() (bool, error) {
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := js.CreateStream(sctx, jetstream.StreamConfig{Name: "CHAOS_PROBE", Subjects: []string{"chaos.probe"},
			Replicas: len(c.Nodes), Storage: jetstream.MemoryStorage})
		if err != nil {
			return false, nil
		}
		return true, js.DeleteStream(sctx, "CHAOS_PROBE")
	})
}

// URL lists every node's client URL, comma-separated, as NATS_URL takes them.
func (c *NATSCluster) URL() string {
	urls := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		urls[i] = s.URL()
	}
	return strings.Join(urls, ",")
}

// Node returns the node named name.
func (c *NATSCluster) Node(name string) *NATSServer {
	for _, s := range c.Nodes {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// StreamLeader names the node leading stream's raft group.
func StreamLeader(ctx context.Context, js jetstream.JetStream, stream string) (string, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", fmt.Errorf("find stream leader: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return "", fmt.Errorf("find stream leader: %w", err)
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", errors.New("find stream leader: no leader")
	}
	return info.Cluster.Leader, nil
}

// Stop stops every node.
func (c *NATSCluster) Stop(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range c.Nodes {
		wg.Go(func() { _ = s.Stop(ctx, 5*time.Second) })
	}
	wg.Wait()
}

// connectAll connects to any node of url (comma-separated) as admin,
// reconnecting forever: the test watches every event and every consumer.
func connectAll(url string, ids harness.Identities) (*nats.Conn, error) {
	opts, err := ids.Options(events.RoleAdmin)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", url, err)
	}
	nc, err := nats.Connect(url, append(opts, nats.Timeout(2*time.Second), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", url, err)
	}
	return nc, nil
}
