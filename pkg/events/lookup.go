package events

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrNoEvent is returned by Lookup when the stream holds no such event.
var ErrNoEvent = errors.New("no such event")

// Lookup reads the last stored event of kind k for a backup straight from
// the stream. Services use it to rebuild what they did not see themselves,
// e.g. a replica resuming a backup that another one froze.
func Lookup(ctx context.Context, js jetstream.JetStream, stream string, k Kind, ref BackupRef) (Event, error) {
	if stream == "" {
		stream = DefaultStream
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return Event{}, fmt.Errorf("look up %s of %s: %w", k, ref.BackupID, err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, Subject(k, ref))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Event{}, fmt.Errorf("look up %s of %s: %w", k, ref.BackupID, ErrNoEvent)
	}
	if err != nil {
		return Event{}, fmt.Errorf("look up %s of %s: %w", k, ref.BackupID, err)
	}
	return DecodeMessage(msg.Subject, msg.Header, msg.Data)
}

// StreamHistory is the history of backups the stream holds: the services
// that look back at a backup's earlier events (the hooker resuming what
// another replica froze, the scheduler and the notifier describing an
// outcome) read them through it. Its Lookup method value serves where a
// function is wanted.
type StreamHistory struct {
	js     jetstream.JetStream
	stream string
}

// NewStreamHistory reads stream ("": DefaultStream) through js.
func NewStreamHistory(js jetstream.JetStream, stream string) *StreamHistory {
	return &StreamHistory{js: js, stream: stream}
}

// Lookup returns the last stored event of kind k for the backup (see
// Lookup), or an error wrapping ErrNoEvent.
func (h *StreamHistory) Lookup(ctx context.Context, k Kind, ref BackupRef) (Event, error) {
	return Lookup(ctx, h.js, h.stream, k, ref)
}
