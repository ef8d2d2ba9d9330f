package notify

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Design: every replica paces its own posts (slack.Client), so two replicas
// can together post to one destination faster than Slack allows, and Slack
// answers one of them 429 with a Retry-After. That wait is the
// destination's, not the replica's: a replica that had not seen the 429
// must not post before it ends either. turns shares it through the
// ledger's bucket, which every replica already shares.
//
// Invariants, per destination:
//   - one HTTP call at a time across the replicas: a replica posts only in
//     its turn, taken by compare-and-set on the destination's record, so a
//     429 is recorded before anyone else can call;
//   - no turn starts before the end of the latest Retry-After any turn
//     ended with (notBefore);
//   - a turn lasts at most the call's timeout plus turnMargin: a replica
//     that dies in its turn holds the destination no longer than that.
//
// Times are the replicas' wall clocks, assumed to agree well within a
// second (Retry-After counts whole seconds).

const (
	// turnPoll is how often a replica looks again at a destination another
	// replica is posting to (a call takes milliseconds).
	turnPoll = 20 * time.Millisecond
	// turnMargin covers, beyond the HTTP call's timeout, the ledger writes
	// made in a turn.
	turnMargin = 10 * time.Second
	// turnEndTimeout bounds ending a turn, which is done even when the
	// post's ctx has ended: otherwise the others would wait out the lease.
	turnEndTimeout = 5 * time.Second
)

// turnRecord is one destination's turn state.
type turnRecord struct {
	Destination string    `json:"destination"`
	Holder      string    `json:"holder,omitempty"` // the turn in progress, "" between turns
	Until       time.Time `json:"until"`            // when the holder's turn lapses
	NotBefore   time.Time `json:"notBefore"`        // no turn starts before (Retry-After)
}

// turns hands out turns on each destination to the replicas.
type turns struct {
	l   *Ledger
	log *slog.Logger
}

func turnKey(dest string) string {
	sum := sha256.Sum256([]byte(dest))
	return "t." + hex.EncodeToString(sum[:16])
}

// take blocks until it is this caller's turn on dest, for at most timeout
// plus turnMargin, and returns the function that ends it (slack.Hooks.Turn).
func (t *turns) take(ctx context.Context, dest string, timeout time.Duration) (func(retryAfter time.Duration), error) {
	key, id := turnKey(dest), rand.Text()
	waited := false
	for {
		rec, rev, err := t.read(ctx, key, dest)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		var wait time.Duration
		if rec.Holder != "" && now.Before(rec.Until) {
			wait = min(turnPoll, rec.Until.Sub(now))
		}
		if d := rec.NotBefore.Sub(now); d > wait {
			if !waited {
				t.log.DebugContext(ctx, "slack destination held by a Retry-After", "destination", dest, "until", rec.NotBefore)
				waited = true
			}
			wait = d
		}
		if wait > 0 {
			tm := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				tm.Stop()
				return nil, fmt.Errorf("wait for a turn on %s: %w", dest, ctx.Err())
			case <-tm.C:
			}
			continue
		}
		rec.Holder, rec.Until = id, now.Add(timeout+turnMargin)
		if err := t.write(ctx, key, rec, rev); errors.Is(err, errChanged) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("take a turn on %s: %w", dest, err)
		}
		return func(retryAfter time.Duration) { t.end(ctx, key, dest, id, retryAfter) }, nil
	}
}

// end ends turn id on dest and records a Retry-After, if any, for every
// replica. A failure is logged: the turn then lapses at its Until.
func (t *turns) end(ctx context.Context, key, dest, id string, retryAfter time.Duration) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), turnEndTimeout)
	defer cancel()
	notBefore := time.Now().Add(retryAfter)
	for {
		rec, rev, err := t.read(ctx, key, dest)
		if err != nil {
			t.log.WarnContext(ctx, "could not end a turn on a slack destination", "destination", dest, "err", err)
			return
		}
		mine := rec.Holder == id
		if !mine {
			t.log.WarnContext(ctx, "a turn on a slack destination outlasted its lease", "destination", dest)
		}
		later := retryAfter > 0 && notBefore.After(rec.NotBefore)
		if !mine && !later {
			return
		}
		if mine {
			rec.Holder, rec.Until = "", time.Time{}
		}
		if later {
			rec.NotBefore = notBefore
		}
		err = t.write(ctx, key, rec, rev)
		if errors.Is(err, errChanged) {
			continue
		}
		if err != nil {
			t.log.WarnContext(ctx, "could not end a turn on a slack destination", "destination", dest, "err", err)
		}
		return
	}
}

// read returns dest's record and its revision, 0 when there is none yet.
func (t *turns) read(ctx context.Context, key, dest string) (turnRecord, uint64, error) {
	rec := turnRecord{Destination: dest}
	kve, err := t.l.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return rec, 0, nil
	}
	if err != nil {
		return rec, 0, fmt.Errorf("read turn of %s: %w", dest, err)
	}
	if err := json.Unmarshal(kve.Value(), &rec); err != nil {
		return rec, 0, fmt.Errorf("read turn of %s: %w", dest, err)
	}
	return rec, kve.Revision(), nil
}

// write replaces dest's record read at rev; errChanged when another
// replica wrote it since.
func (t *turns) write(ctx context.Context, key string, rec turnRecord, rev uint64) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = t.l.cas(ctx, key, b, rev)
	return err
}
