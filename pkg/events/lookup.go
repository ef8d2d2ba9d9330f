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
// e.g. a replica resuming a backup that another one froze. An event from a
// source not allowed to emit k (see CheckSource) is passed over for the last
// genuine one before it; with none, the error matches both ErrNoEvent and
// ErrForbiddenSource.
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
	ev, err := DecodeMessage(msg.Subject, msg.Header, msg.Data)
	if !errors.Is(err, ErrForbiddenSource) {
		return ev, err
	}
	// The last one is forged. Hiding the genuine event behind it must not
	// stop a service that needs it (a takeover rebuilding its plan from the
	// request): look for the last genuine one before it.
	return lastGenuine(ctx, s, Subject(k, ref), msg.Sequence, err)
}

// maxForgedSkipped bounds the messages lastGenuine reads: a backup's subject
// holds one event of each kind, a few with retries; more is a flood of
// forgeries, not worth reading through.
const maxForgedSkipped = 64

// lastGenuine returns the last event on subject stored before the sequence
// before, from a source allowed to emit it. With none, the error matches
// ErrNoEvent and ErrForbiddenSource and says what was refused (forged).
func lastGenuine(ctx context.Context, s jetstream.Stream, subject string, before uint64, forged error) (Event, error) {
	var found Event
	ok := false
	seq := uint64(1)
	for range maxForgedSkipped {
		msg, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return Event{}, fmt.Errorf("look up %s: %w", subject, err)
		}
		if msg.Sequence >= before {
			break
		}
		if ev, err := DecodeMessage(msg.Subject, msg.Header, msg.Data); err == nil {
			found, ok = ev, true
		}
		seq = msg.Sequence + 1
	}
	if !ok {
		return Event{}, fmt.Errorf("look up %s: %w: the stored one is refused: %w", subject, ErrNoEvent, forged)
	}
	return found, nil
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
