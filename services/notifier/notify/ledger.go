package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// Delivery states recorded in the ledger.
const (
	stateSending = "sending"  // a POST may be in flight or may have happened
	stateSent    = "sent"     // Slack confirmed the message
	stateNotSent = "not-sent" // Slack said no (429, 5xx): a retry is safe
)

// Ledger records, per destination and event id, whether a message was
// posted, in a JetStream key-value bucket shared by every replica: a
// redelivered event, or one replayed after a restart, is not posted again.
// The same bucket holds each destination's turns (see turns.go): keys
// "n.<hash>" are deliveries, "t.<hash>" turns.
type Ledger struct{ kv jetstream.KeyValue }

// OpenLedger opens the bucket, which `freezeframe setup` creates
// (events.LedgerBucketConfig): a missing one is an error wrapping
// events.ErrNotSetUp.
func OpenLedger(ctx context.Context, js jetstream.JetStream, bucket string) (*Ledger, error) {
	kv, err := events.BindKeyValue(ctx, js, bucket)
	if err != nil {
		return nil, fmt.Errorf("open notification ledger: %w", err)
	}
	return &Ledger{kv: kv}, nil
}

type record struct {
	State       string    `json:"state"`
	EventID     string    `json:"eventId"`
	Destination string    `json:"destination"`
	At          time.Time `json:"at"`
}

// entry is one event's delivery to one destination.
type entry struct {
	l   *Ledger
	key string
	rec record
	rev uint64 // 0: no record yet
}

// ErrClaimed says another replica is posting the same event right now.
var ErrClaimed = errors.New("another replica is posting this event")

func ledgerKey(dest, eventID string) string {
	sum := sha256.Sum256([]byte(dest + "\n" + eventID))
	return "n." + hex.EncodeToString(sum[:16])
}

// open reads the entry; its state is "" when nothing was recorded.
func (l *Ledger) open(ctx context.Context, dest, eventID string) (*entry, error) {
	e := &entry{l: l, key: ledgerKey(dest, eventID), rec: record{EventID: eventID, Destination: dest}}
	kve, err := l.kv.Get(ctx, e.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return e, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read notification ledger: %w", err)
	}
	if err := json.Unmarshal(kve.Value(), &e.rec); err != nil {
		return nil, fmt.Errorf("read notification ledger %s: %w", e.key, err)
	}
	e.rev = kve.Revision()
	return e, nil
}

// set moves the entry to state, if nobody else moved it since it was read.
func (e *entry) set(ctx context.Context, state string) error {
	e.rec.State, e.rec.At = state, time.Now().UTC()
	b, err := json.Marshal(e.rec)
	if err != nil {
		return err
	}
	rev, err := e.l.cas(ctx, e.key, b, e.rev)
	if errors.Is(err, errChanged) {
		return fmt.Errorf("record %s of %s: %w", state, e.rec.EventID, ErrClaimed)
	}
	if err != nil {
		return fmt.Errorf("record %s of %s: %w", state, e.rec.EventID, err)
	}
	e.rev = rev
	return nil
}

// errChanged says a key moved on since it was read.
var errChanged = errors.New("changed since read")

// cas writes value at key if nobody wrote it since revision rev was read
// (rev 0: if it does not exist), and returns the new revision. It returns
// errChanged when somebody did.
func (l *Ledger) cas(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	var err error
	if rev == 0 {
		rev, err = l.kv.Create(ctx, key, value)
	} else {
		rev, err = l.kv.Update(ctx, key, value, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, errChanged
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return 0, errChanged
	}
	return rev, err
}
