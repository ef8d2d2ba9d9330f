package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Hold is a lease held by this process. Its methods are safe for concurrent
// use and serialise the writes, so that renewals and state changes never
// race each other's compare-and-set.
type Hold struct {
	s   *Store
	key string

	mu       sync.Mutex
	l        Lease
	rev      uint64
	released bool
	lost     error
}

func (s *Store) newHold(k string, l Lease, rev uint64) *Hold {
	return &Hold{s: s, key: k, l: l, rev: rev}
}

// Lease returns the lease as last written by this holder.
func (h *Hold) Lease() Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.l
}

// Revision returns the key revision of the last write.
func (h *Hold) Revision() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// SetState records where the freeze is (StateFrozen after the pre-hook,
// StateResuming before the post-hook). ErrLost if the lease is gone.
func (h *Hold) SetState(ctx context.Context, st State) error {
	if !st.valid() {
		return fmt.Errorf("set lease state: unknown state %q", st)
	}
	return h.write(ctx, func(l *Lease) { l.State = st })
}

// Renew rewrites RenewedAt. ErrLost if the lease is gone; other errors are
// transient.
func (h *Hold) Renew(ctx context.Context) error {
	return h.write(ctx, func(*Lease) {})
}

func (h *Hold) write(ctx context.Context, change func(*Lease)) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return fmt.Errorf("%w: released by this holder", ErrLost)
	}
	if h.lost != nil {
		return h.lost
	}
	next := h.l
	change(&next)
	next.RenewedAt = now()
	data, err := json.Marshal(next)
	if err != nil {
		return err
	}
	for range 3 {
		rev, err := h.s.kv.Update(ctx, h.key, data, h.rev)
		if err == nil {
			h.l, h.rev = next, rev
			return nil
		}
		if !isConflict(err) {
			return fmt.Errorf("write lease of %s: %w", h.l.Workload, err)
		}
		// The revision moved. Either an earlier write of ours was stored
		// although its reply was lost, or someone released or took the lease.
		cur, curRev, gerr := h.s.get(ctx, h.key)
		switch {
		case errors.Is(gerr, ErrNotHeld):
			h.lost = fmt.Errorf("%w: %s was released", ErrLost, h.l.Workload)
			return h.lost
		case gerr != nil:
			return fmt.Errorf("write lease of %s: %w", h.l.Workload, gerr)
		case cur.BackupID != h.l.BackupID || cur.Holder != h.l.Holder || !cur.AcquiredAt.Equal(h.l.AcquiredAt):
			h.lost = fmt.Errorf("%w: %s is now held by backup %s on replica %s", ErrLost, h.l.Workload, cur.BackupID, cur.Holder)
			return h.lost
		}
		h.rev = curRev // ours: adopt the revision and write again
	}
	return fmt.Errorf("write lease of %s: revision kept moving", h.l.Workload)
}

// Keep renews the lease every RenewEvery until ctx ends or the hold is
// released (then it returns nil), the lease is lost (ErrLost), or no renewal
// succeeded for StaleAfter (ErrStalled): the watchdogs may then be unlocking
// the workload, and a holder that cannot reach NATS will not hear about it,
// so it should resume the application itself.
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
			return fmt.Errorf("%w: no renewal of %s for %s: %w", ErrStalled, h.key, time.Since(lastOK).Round(time.Millisecond), err)
		}
	}
}

func (h *Hold) isReleased() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.released
}

// Release ends the freeze: it deletes the lease if this backup still holds
// it. Releasing twice, or a lease already gone, is not an error.
func (h *Hold) Release(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return nil
	}
	err := h.s.kv.Delete(ctx, h.key, jetstream.LastRevision(h.rev))
	if err != nil && !isConflict(err) {
		return fmt.Errorf("release lease of %s: %w", h.l.Workload, err)
	}
	if err != nil {
		// Our revision is stale (a write whose reply was lost, or a take
		// over): release by backup id instead.
		if err := h.s.release(ctx, h.key, h.l.Workload, h.l.BackupID); err != nil {
			return err
		}
	}
	h.released = true
	return nil
}
