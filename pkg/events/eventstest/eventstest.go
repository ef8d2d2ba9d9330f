// Package eventstest starts an embedded nats-server with JetStream for tests:
// a random port and a temporary store, shut down when the test ends.
package eventstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/embedded"
)

// Server is an embedded server for one test.
type Server struct {
	*embedded.Server
	t testing.TB
}

// NewServer starts a server that is shut down at the end of the test, set
// up as `freezeframe setup` does (events.Setup: the stream, the shared
// durables and the buckets, with default settings), so that services bind
// to it as they would in a cluster.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s := NewBareServer(t)
	_, js := s.JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := events.Setup(ctx, js, events.SetupConfig{}, nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// NewBareServer starts a server without any stream, consumer or bucket.
func NewBareServer(t testing.TB) *Server {
	t.Helper()
	s, err := embedded.Start(embedded.Options{StoreDir: t.TempDir(), Port: -1, ServerName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return &Server{Server: s, t: t}
}

// Connect opens a connection closed at the end of the test (before the server).
func (s *Server) Connect() *nats.Conn {
	s.t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.Timeout(5*time.Second))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

// JetStream opens a connection and returns its JetStream context, with the
// backup event stream already created.
func (s *Server) JetStream() (*nats.Conn, jetstream.JetStream) {
	s.t.Helper()
	nc := s.Connect()
	js, err := jetstream.New(nc)
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := events.EnsureStream(ctx, js, events.StreamConfig{}); err != nil {
		s.t.Fatal(err)
	}
	return nc, js
}

// Collector records every backup event on the stream, for assertions.
type Collector struct {
	t      testing.TB
	events chan events.Event
}

// Collect starts recording every event matching f from the start of the stream.
func Collect(ctx context.Context, t testing.TB, c *events.Client, f events.Filter) *Collector {
	t.Helper()
	col := &Collector{t: t, events: make(chan events.Event, 4096)}
	go func() {
		for ev, err := range c.Subscribe(ctx, f, events.SubscribeOptions{FromStart: true}) {
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				continue
			}
			col.events <- ev
		}
	}()
	return col
}

// Next returns the next event, failing the test after timeout.
func (c *Collector) Next(timeout time.Duration) events.Event {
	c.t.Helper()
	select {
	case ev := <-c.events:
		return ev
	case <-time.After(timeout):
		c.t.Fatalf("no event within %s", timeout)
		return events.Event{}
	}
}

// Until returns the events up to and including the first for which stop is
// true, failing the test if it does not come within timeout.
func (c *Collector) Until(timeout time.Duration, stop func(events.Event) bool) []events.Event {
	c.t.Helper()
	deadline := time.After(timeout)
	var got []events.Event
	for {
		select {
		case ev := <-c.events:
			got = append(got, ev)
			if stop(ev) {
				return got
			}
		case <-deadline:
			kinds := make([]events.Kind, len(got))
			for i, e := range got {
				kinds[i] = e.Kind()
			}
			c.t.Fatalf("condition not met within %s; events so far: %v", timeout, kinds)
			return nil
		}
	}
}

// Quiet reports whether no event arrives within d.
func (c *Collector) Quiet(d time.Duration) (events.Event, bool) {
	select {
	case ev := <-c.events:
		return ev, false
	case <-time.After(d):
		return events.Event{}, true
	}
}
