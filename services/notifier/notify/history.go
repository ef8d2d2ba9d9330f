package notify

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// History finds the earlier events of a backup, to say in a message what
// the terminal event does not (snapshots, the failed step, total time).
type History interface {
	// Lookup returns the last event of kind k for the backup, or an error
	// wrapping events.ErrNoEvent.
	Lookup(ctx context.Context, k events.Kind, ref events.BackupRef) (events.Event, error)
}

// StreamHistory reads the backup event stream.
type StreamHistory struct {
	js     jetstream.JetStream
	stream string
}

// NewStreamHistory reads stream through js.
func NewStreamHistory(js jetstream.JetStream, stream string) *StreamHistory {
	return &StreamHistory{js: js, stream: stream}
}

// Lookup implements History.
func (h *StreamHistory) Lookup(ctx context.Context, k events.Kind, ref events.BackupRef) (events.Event, error) {
	return events.Lookup(ctx, h.js, h.stream, k, ref)
}
