package admission

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// Gate admits freezes, per storage key, up to each storage's Limit, first
// come first served. Its zero value is not usable: see NewGate.
type Gate struct {
	cfg Config
	now func() time.Time

	mu       sync.Mutex
	storages map[string]*storage
	// closed is closed by Close: no one is admitted any more.
	closed    chan struct{}
	closeOnce sync.Once
}

// ErrClosed is Admit's error once the gate is closed.
var ErrClosed = errors.New("admission gate closed")

// storage is one key's limit, its freezes in flight and its queue.
type storage struct {
	limit    *Limit
	inFlight int
	queue    []*waiter
}

type waiter struct {
	since time.Time
	// slot is set, and ready closed, when the waiter is admitted.
	slot  *Slot
	ready chan struct{}
}

// NewGate returns a gate whose limits follow cfg; now is the clock (nil:
// time.Now), injected so that tests decide what time it is.
func NewGate(cfg Config, now func() time.Time) *Gate {
	if now == nil {
		now = time.Now
	}
	return &Gate{cfg: cfg.withDefaults(), now: now, storages: map[string]*storage{}, closed: make(chan struct{})}
}

// Slot is one admitted freeze. Release gives it back; Observe reports its
// cut. Both are safe on a nil Slot, and Release on a released one.
type Slot struct {
	gate       *Gate
	key        string
	admittedAt time.Time
	waited     time.Duration
	crowded    bool

	once     sync.Once
	observed bool // guarded by gate.mu
}

// Waited is how long the freeze waited for admission.
func (s *Slot) Waited() time.Duration {
	if s == nil {
		return 0
	}
	return s.waited
}

// Key is the storage key the slot counts against.
func (s *Slot) Key() string {
	if s == nil {
		return ""
	}
	return s.key
}

// Admit waits until key's storage has room for one more freeze, then
// returns its slot; the caller owns it and releases it when the freeze
// ends. Requests are admitted in the order they called Admit. When ctx
// ends first, Admit returns its error, or ErrClosed once the gate is
// closed, and nothing is held.
func (g *Gate) Admit(ctx context.Context, key string) (*Slot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g.mu.Lock()
	select {
	case <-g.closed:
		g.mu.Unlock()
		return nil, ErrClosed
	default:
	}
	st := g.storage(key)
	now := g.now()
	if len(st.queue) == 0 && g.hasRoom(st) {
		s := g.admit(st, key, now, now, false)
		g.mu.Unlock()
		return s, nil
	}
	w := &waiter{since: now, ready: make(chan struct{})}
	st.queue = append(st.queue, w)
	g.mu.Unlock()

	err := ErrClosed
	select {
	case <-w.ready:
		return w.slot, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-g.closed:
	}
	g.mu.Lock()
	if w.slot != nil {
		// Admitted meanwhile: give the room to the next.
		g.mu.Unlock()
		w.slot.Release()
		return nil, err
	}
	if i := slices.Index(st.queue, w); i >= 0 {
		st.queue = slices.Delete(st.queue, i, i+1)
	}
	g.mu.Unlock()
	return nil, err
}

// Close stops admitting: every waiter, and every later Admit, gets
// ErrClosed. Slots already admitted stay theirs until released. A service
// closes its gate when it starts shutting down, so that no request freezes
// an application while the replica is leaving.
func (g *Gate) Close() {
	g.closeOnce.Do(func() { close(g.closed) })
}

// Release gives the slot back, once: later calls do nothing.
func (s *Slot) Release() {
	if s == nil {
		return
	}
	s.once.Do(func() {
		g := s.gate
		g.mu.Lock()
		defer g.mu.Unlock()
		st := g.storage(s.key)
		st.inFlight--
		g.grant(st, s.key)
	})
}

// Observe reports the freeze's snapshot cut; only the first report counts
// (a trigger delivered twice is one cut). A cut of zero is no measurement.
func (s *Slot) Observe(cut time.Duration) {
	if s == nil || cut <= 0 {
		return
	}
	g := s.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if s.observed {
		return
	}
	s.observed = true
	st := g.storage(s.key)
	st.limit.Observe(Sample{Cut: cut, AdmittedAt: s.admittedAt, Crowded: s.crowded}, g.now())
	g.grant(st, s.key)
}

// Limit is key's current limit; 0 when the gate is disabled.
func (g *Gate) Limit(key string) int {
	if g.cfg.Disabled {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.storage(key).limit.Current()
}

// Stats is one storage's state, for metrics.
type Stats struct {
	Key      string
	Limit    int // 0 when the gate is disabled: no limit
	InFlight int
	Waiting  int
	Baseline time.Duration
}

// Stats returns every storage's state.
func (g *Gate) Stats() []Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	out := make([]Stats, 0, len(g.storages))
	for k, st := range g.storages {
		s := Stats{Key: k, InFlight: st.inFlight, Waiting: len(st.queue), Baseline: st.limit.Baseline(now)}
		if !g.cfg.Disabled {
			s.Limit = st.limit.Current()
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Stats) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

// storage returns key's storage, made on first use. g.mu is held.
func (g *Gate) storage(key string) *storage {
	st, ok := g.storages[key]
	if !ok {
		st = &storage{limit: NewLimit(g.cfg)}
		g.storages[key] = st
	}
	return st
}

func (g *Gate) hasRoom(st *storage) bool {
	return g.cfg.Disabled || st.inFlight < st.limit.Current()
}

// admit counts one more freeze in flight. g.mu is held.
func (g *Gate) admit(st *storage, key string, since, now time.Time, queued bool) *Slot {
	st.inFlight++
	// It had to wait, or the gate is half full or more with it: the limit
	// is being used, so a quick cut says more room would be used too.
	crowded := queued || 2*st.inFlight >= st.limit.Current()
	return &Slot{gate: g, key: key, admittedAt: now, waited: now.Sub(since), crowded: crowded}
}

// grant admits waiters, oldest first, while there is room. g.mu is held.
func (g *Gate) grant(st *storage, key string) {
	if len(st.queue) == 0 {
		return
	}
	now := g.now()
	for len(st.queue) > 0 && g.hasRoom(st) {
		w := st.queue[0]
		st.queue = st.queue[1:]
		w.slot = g.admit(st, key, w.since, now, true)
		close(w.ready)
	}
}
