package eventstest

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// Stored returns the events on the backup event stream that match f (the
// zero Filter: all of them), oldest first, as events.Client.List reads them:
// what a test checks the services published. It does not wait for more.
func Stored(t testing.TB, js jetstream.JetStream, f events.Filter) []events.Event {
	t.Helper()
	c, err := events.NewClient(js.Conn())
	if err != nil {
		t.Fatal(err)
	}
	evs, err := c.List(t.Context(), f, events.SubscribeOptions{FromStart: true})
	if err != nil {
		t.Fatalf("stored events: %v", err)
	}
	return evs
}
