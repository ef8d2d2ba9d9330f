package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// Hold is a lease held by this process. Its methods are safe for concurrent
// use and serialise the writes, so that renewals and state changes never
// race each other's compare-and-set.
type Hold struct {
	s   *Store
	key string

	// writing serialises writes, which take a round trip (or, while the
	// bucket elects a leader, seconds); mu guards the fields and is never
	// held across one, so reading the lease never waits for a write.
	writing sync.Mutex
	mu      sync.Mutex
	l       Lease
	rev     uint64
	// epoch is the fencing token, written into the lease from the first
	// write after the Create (the Create cannot know its own revision).
	epoch    uint64
	released bool
	lost     error
	// onStored is called after every write that was stored.
	onStored func(Lease)
}

func (s *Store) newHold(k string, l Lease, rev, epoch uint64) *Hold {
	return &Hold{s: s, key: k, l: l, rev: rev, epoch: epoch}
}

// Lease returns the lease as last written by this holder.
func (h *Hold) Lease() Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.l
}

// Epoch is the freeze's fencing token: the revision that created the key.
func (h *Hold) Epoch() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.epoch
}

// Revision returns the key revision of the last write.
func (h *Hold) Revision() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// SetState moves the freeze to st (StateFrozen after the pre-hook,
// StateResuming before the post-hook, StateFrozen again after a failed
// post-hook), a compare-and-set on the key: ErrLost if the lease is gone or
// changed hands, in which case this holder must not act on the freeze any
// more. A transition the state machine does not allow is refused.
func (h *Hold) SetState(ctx context.Context, st State) error {
	if !st.Valid() {
		return fmt.Errorf("set lease state: unknown state %q", st)
	}
	return h.write(ctx, func(l *Lease) error {
		if !allowed(l.State, st) {
			return fmt.Errorf("set lease state of %s: %s to %s is not a transition", l.Workload, l.State, st)
		}
		l.State = st
		return nil
	})
}

// OnStored sets f to be called with the lease after every write of this
// holder that was stored (renewals and state changes), in write order: the
// one place the holder learns that the record vouches for the freeze until
// a later ValidUntil. f runs while writes are serialised, so it must not
// block, nor write the lease.
func (h *Hold) OnStored(f func(Lease)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.onStored = f
}

// Renew rewrites RenewedAt. ErrLost if the lease is gone; other errors are
// transient.
func (h *Hold) Renew(ctx context.Context) error {
	return h.write(ctx, func(*Lease) error { return nil })
}

// ValidUntil is the ValidUntil of the last write that was stored: past it
// (and FreezeClockTolerance more), nobody counts the freeze frozen on the
// record's word, so this holder may resume without writing first.
func (h *Hold) ValidUntil() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.l.ValidUntil
}

// Lost returns why the lease was lost, or nil while it is held as far as
// this holder knows.
func (h *Hold) Lost() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return fmt.Errorf("%w: released by this holder", ErrLost)
	}
	return h.lost
}

func (h *Hold) write(ctx context.Context, change func(*Lease) error) error {
	h.writing.Lock()
	defer h.writing.Unlock()
	if err := h.Lost(); err != nil {
		return err
	}
	h.mu.Lock()
	next, rev := h.l, h.rev
	h.mu.Unlock()
	next.Epoch = h.epoch
	if err := change(&next); err != nil {
		return err
	}
	for range 3 {
		next.RenewedAt = now()
		next.ValidUntil = h.s.cfg.validUntil(next)
		data, err := json.Marshal(next)
		if err != nil {
			return err
		}
		stored, err := h.s.kv.Update(ctx, h.key, data, rev)
		if err == nil {
			h.mu.Lock()
			h.l, h.rev = next, stored
			onStored := h.onStored
			h.mu.Unlock()
			if onStored != nil {
				onStored(next)
			}
			return nil
		}
		if !isConflict(err) {
			return fmt.Errorf("write lease of %s: %w", next.Workload, err)
		}
		// The revision moved. Either an earlier write of ours was stored
		// although its reply was lost, or someone released or took the lease.
		cur, curRev, gerr := h.s.get(ctx, h.key)
		switch {
		case errors.Is(gerr, ErrNotHeld):
			return h.lose(fmt.Errorf("%w: %s was released", ErrLost, next.Workload))
		case gerr != nil:
			return fmt.Errorf("write lease of %s: %w", next.Workload, gerr)
		case cur.BackupID != next.BackupID || cur.Holder != next.Holder || !cur.AcquiredAt.Equal(next.AcquiredAt) || (cur.Epoch != 0 && cur.Epoch != h.epoch):
			return h.lose(fmt.Errorf("%w: %s is now held by backup %s on replica %s", ErrLost, next.Workload, cur.BackupID, cur.Holder))
		}
		rev = curRev // ours: adopt the revision and write again
		h.mu.Lock()
		h.rev = curRev
		h.mu.Unlock()
	}
	return fmt.Errorf("write lease of %s: revision kept moving", next.Workload)
}

func (h *Hold) lose(err error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lost = err
	return err
}

// Keep renews the lease every RenewEvery until ctx ends or the hold is
// released (then it returns nil), the lease is lost (ErrLost), or no renewal
// succeeded for half of StaleAfter and FreezeClockTolerance (ErrStalled). A holder that cannot reach
// NATS will not hear the watchdogs' unlocks, so it should resume the
// application itself; at half the stale period no watchdog may yet have
// taken the freeze over and let another backup freeze the workload, so that
// resume cannot thaw someone else's freeze. A process that did not run for
// the whole stale period (stopped, paused) gets ErrLost instead: by then a
// watchdog may have acted, and resuming blind could thaw another freeze.
func (h *Hold) Keep(ctx context.Context) error {
	cfg := h.s.cfg
	t := time.NewTicker(cfg.RenewEvery)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, max(cfg.RenewEvery, time.Second))
		err := h.Renew(rctx)
		cancel()
		switch {
		case err == nil:
			lastOK = time.Now()
		case ctx.Err() != nil || h.isReleased():
			return nil
		case errors.Is(err, ErrLost):
			return err
		case time.Since(lastOK) >= cfg.StaleAfter:
			// This process did not run for the whole stale period (paused,
			// stopped, starved): a watchdog may have taken the freeze over
			// and another backup frozen the workload since. Resuming blind
			// could thaw that freeze; the watchdogs resume this one.
			return fmt.Errorf("%w: no renewal of %s for %s, past the stale period: presumed taken over: %w", ErrLost, h.key, time.Since(lastOK).Round(time.Millisecond), err)
		case time.Since(lastOK) >= cfg.StaleAfter/2+events.FreezeClockTolerance:
			// Past the record's ValidUntil on every clock within the
			// tolerance: nobody cuts on its word any more.
			return fmt.Errorf("%w: no renewal of %s for %s: %w", ErrStalled, h.key, time.Since(lastOK).Round(time.Millisecond), err)
		}
	}
}

func (h *Hold) isReleased() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.released
}

// End ends the freeze: it records end (events.FreezeEnd) in the backups
// bucket, then deletes the lease. In that order: a backup whose lease is
// gone has always ended, so Acquire can refuse it. Ending twice is not an
// error; the first end recorded stays.
func (h *Hold) End(ctx context.Context, end events.FreezeEnd) error {
	l := h.Lease()
	end.BackupID, end.Workload, end.Epoch = l.BackupID, l.Workload, h.Epoch()
	if err := h.s.End(ctx, end); err != nil {
		return err
	}
	return h.Release(ctx)
}

// Release deletes the lease if this backup still holds it, without
// recording an end: only for a lease under which nothing ran (see End).
// Releasing twice, or a lease already gone, is not an error.
func (h *Hold) Release(ctx context.Context) error {
	h.writing.Lock()
	defer h.writing.Unlock()
	h.mu.Lock()
	released, l, rev := h.released, h.l, h.rev
	h.mu.Unlock()
	if released {
		return nil
	}
	err := h.s.kv.Delete(ctx, h.key, jetstream.LastRevision(rev))
	if err != nil && !isConflict(err) {
		return fmt.Errorf("release lease of %s: %w", l.Workload, err)
	}
	if err != nil {
		// Our revision is stale (a write whose reply was lost, or a take
		// over): release by backup id instead.
		if err := h.s.release(ctx, h.key, l.Workload, l.BackupID); err != nil {
			return err
		}
	}
	h.mu.Lock()
	h.released = true
	h.mu.Unlock()
	return nil
}
