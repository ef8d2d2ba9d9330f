package lease

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// Cause says why a lease is stale.
type Cause string

// Causes of a stale lease.
const (
	// CauseDeadline: the lease is past its freeze cap.
	CauseDeadline Cause = "deadline"
	// CauseStopped: the holder stopped renewing.
	CauseStopped Cause = "stopped-renewing"
	// CauseSnapshotStalled: the workload is frozen and no snapshotter has
	// reported progress for SnapshotStallAfter.
	CauseSnapshotStalled Cause = "snapshot-stalled"
)

// Stale describes a stale lease, for the watchdog's callback.
type Stale struct {
	Lease Lease
	// Revision is the key revision the watchdog judged.
	Revision uint64
	Cause    Cause
	// Reason is for humans, e.g. "frozen past its 5m0s cap (deadline ...)"
	// or "holder hooker-1 stopped renewing 10.2s ago".
	Reason string
	// Attempt counts this replica's calls for this backup's lease, from 1.
	Attempt int
}

// WatchdogConfig configures a Watchdog.
type WatchdogConfig struct {
	// Replica names this replica in heartbeats and logs.
	Replica string
	// Tick is how often leases are judged and heartbeats written (default 250ms).
	Tick time.Duration
	// RefireAfter is the least time between two calls of onStale for one
	// lease on this replica, whether the previous call failed or not
	// (default 5s).
	RefireAfter time.Duration
	// SnapshotStallAfter, when set, makes a frozen lease stale once no
	// snapshotter has reported progress on it (events.SnapshotProgressKey)
	// for this long: since its last report, or since the freeze when none
	// came. It should outlast a snapshotter's redelivery after a crash
	// (its ACK_WAIT), so that a restarted replica picks the work up first.
	// Zero: not judged; the freeze cap still applies.
	SnapshotStallAfter time.Duration
}

// Watchdog reports stale leases. See the package documentation.
type Watchdog struct {
	store   *Store
	cfg     WatchdogConfig
	onStale func(context.Context, Stale) error
	log     *slog.Logger
	// maxGap is the longest silence between two heartbeat echoes that still
	// counts as watching.
	maxGap time.Duration
}

// NewWatchdog returns a watchdog over store that calls onStale for each
// stale lease. onStale runs in its own goroutine, at most one call per lease
// at a time; its context is cancelled when the lease is released meanwhile.
// An error is logged and the call repeated after RefireAfter while the lease
// stays stale.
func NewWatchdog(store *Store, cfg WatchdogConfig, onStale func(context.Context, Stale) error, log *slog.Logger) *Watchdog {
	if cfg.Replica == "" {
		cfg.Replica = "hooker"
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 250 * time.Millisecond
	}
	if cfg.RefireAfter <= 0 {
		cfg.RefireAfter = 5 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watchdog{
		store: store, cfg: cfg, onStale: onStale, log: log,
		maxGap: max(store.cfg.StaleAfter/4, 4*cfg.Tick),
	}
}

// tracked is the watchdog's view of one lease.
type tracked struct {
	lease Lease
	rev   uint64
	// changedAt is the watched time at the last revision change.
	changedAt time.Duration
	// confirmed: seen by the current watch.
	confirmed bool

	// frozenAt is the watched time when the lease was first seen frozen.
	frozenAt time.Duration
	frozen   bool

	cancel   context.CancelFunc // set while onStale runs
	fireSeq  uint64
	lastCall time.Time
	attempts int
}

type fired struct {
	key string
	seq uint64
	st  Stale
	err error
}

// run is the state of one Run.
type run struct {
	w      *Watchdog
	id     string    // this run's heartbeat identity
	start  time.Time // heartbeat offsets count from here (monotonic)
	leases map[string]*tracked
	// progress is the snapshotters' latest report per lease key.
	progress map[string]*progressSeen
	results  chan fired
	wg       sync.WaitGroup
	seq      uint64

	synced bool
	// watched is a clock that runs only while heartbeats echo: the time
	// during which this watchdog saw every change to the bucket.
	watched      time.Duration
	lastSent     time.Duration // offset of the newest echoed heartbeat, -1 for none
	lastEchoSent time.Time     // when that heartbeat was sent
	pending      []string      // keys changed since the last echo
	// pendingProgress are lease keys whose progress report changed since the
	// last echo.
	pendingProgress []string
	warnedBlind     time.Time
	badValue        map[string]uint64 // revision of an undecodable value, logged once
}

// Run watches the leases until ctx ends (then it returns nil), or until the
// NATS connection is closed for good.
func (w *Watchdog) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	start := time.Now()
	r := &run{
		w: w, id: rand.Text(), start: start,
		leases: map[string]*tracked{}, progress: map[string]*progressSeen{}, results: make(chan fired),
		lastSent: -1, lastEchoSent: start, badValue: map[string]uint64{},
	}
	defer r.wg.Wait()
	defer cancel()

	// One acknowledged heartbeat first: it fails loudly if this replica may
	// not write the bucket, which would otherwise leave it blind forever.
	if _, err := w.store.kv.Put(ctx, heartbeatKey, r.beat()); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it began
		}
		return fmt.Errorf("watchdog heartbeat: %w", err)
	}
	r.wg.Go(func() { r.heartbeat(ctx) })

	nc := w.store.js.Conn()
	for {
		err := r.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if nc.IsClosed() {
			return fmt.Errorf("watchdog: nats connection closed: %w", err)
		}
		w.log.WarnContext(ctx, "lease watch ended, restarting", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (r *run) beat() []byte {
	return fmt.Appendf(nil, "%s %d %s", r.id, time.Since(r.start), r.w.cfg.Replica)
}

// heartbeat writes a heartbeat every Tick without waiting for acks, so that
// a slow round trip delays the echoes but does not space them out.
func (r *run) heartbeat(ctx context.Context) {
	subj := "$KV." + r.w.store.cfg.Bucket + "." + heartbeatKey
	nc := r.w.store.js.Conn()
	t := time.NewTicker(r.w.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// An error (disconnected) shows as missing echoes.
			_ = nc.Publish(subj, r.beat())
		}
	}
}

// follow runs one watch of the bucket until it ends.
func (r *run) follow(ctx context.Context) error {
	w := r.w
	wt, err := w.store.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch leases: %w", err)
	}
	defer stopWatch(wt)
	for _, t := range r.leases {
		t.confirmed = false
	}
	r.synced = false
	// Every watchdog heartbeats every Tick, so a watch that works delivers
	// something that often, even while it lags behind.
	lastDelivery := time.Now()
	tick := time.NewTicker(w.cfg.Tick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-wt.Updates():
			if !ok {
				return errors.New("watch closed")
			}
			lastDelivery = time.Now()
			if e == nil {
				r.synced = true
				for k, t := range r.leases {
					if !t.confirmed {
						r.drop(k) // released while the watch was down
					}
				}
				continue
			}
			r.apply(ctx, e)
		case f := <-r.results:
			r.settle(ctx, f)
		case <-tick.C:
			now := time.Now()
			if r.blind(now) {
				// nats.go's watch does not always come back after a server
				// restart: start a new one rather than stay blind.
				if quiet := now.Sub(lastDelivery); quiet > w.store.cfg.StaleAfter {
					return fmt.Errorf("watch delivered nothing for %s", quiet.Round(time.Millisecond))
				}
				silent := now.Sub(r.lastEchoSent)
				if silent > 2*w.maxGap && now.Sub(r.warnedBlind) > w.store.cfg.StaleAfter {
					r.warnedBlind = now
					w.log.WarnContext(ctx, "watchdog cannot prove its view of the freeze leases is current; not judging them", "silent_for", silent.Round(time.Millisecond), "leases", len(r.leases))
				}
				continue
			}
			r.judge(ctx, now)
		}
	}
}

// stopWatch stops a watch in the background (it deletes the consumer, which
// waits for a timeout while the server is unreachable) and drains it: the
// library's delivery callback blocks on a full channel while holding the
// lock its close needs.
func stopWatch(wt jetstream.KeyWatcher) {
	go func() {
		_ = wt.Stop() // unsubscribing a read-only watch loses nothing
		for range wt.Updates() {
		}
	}()
}

// blind reports whether the watch cannot be shown to be current.
func (r *run) blind(now time.Time) bool {
	return !r.synced || r.lastSent < 0 || now.Sub(r.lastEchoSent) > r.w.maxGap
}

func (r *run) apply(ctx context.Context, e jetstream.KeyValueEntry) {
	k := e.Key()
	if k == heartbeatKey {
		if e.Operation() == jetstream.KeyValuePut {
			r.echo(e.Value())
		}
		return
	}
	if lk, ok := strings.CutPrefix(k, events.SnapshotProgressPrefix); ok {
		r.applyProgress(lk, e)
		return
	}
	if !isLeaseKey(k) {
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(r.badValue, k)
		r.drop(k)
		return
	}
	l, err := decode(e.Value())
	if err != nil {
		if r.badValue[k] != e.Revision() {
			r.badValue[k] = e.Revision()
			r.w.log.ErrorContext(ctx, "freeze lease does not decode; the watchdog cannot unlock it", "key", k, "revision", e.Revision(), "err", err)
		}
		r.drop(k)
		return
	}
	delete(r.badValue, k)
	t := r.leases[k]
	if t != nil && t.rev == e.Revision() {
		t.confirmed = true
		return
	}
	if t == nil || t.lease.BackupID != l.BackupID {
		r.drop(k)
		t = &tracked{}
		r.leases[k] = t
	}
	// Any write (renewal, state change, take over) shows a live holder. It
	// was stored before the next heartbeat that echoes: count from there,
	// so that a lease is never judged silent for longer than it was.
	t.lease, t.rev, t.changedAt, t.confirmed = l, e.Revision(), r.watched, true
	if l.State == StateFrozen && !t.frozen {
		t.frozen, t.frozenAt = true, r.watched
	}
	r.pending = append(r.pending, k)
}

// progressSeen is a snapshotter's latest progress report on one lease.
type progressSeen struct {
	backupID  string
	changedAt time.Duration
	// done: the snapshotter deleted its key, finished either way.
	done bool
}

func (r *run) applyProgress(leaseKey string, e jetstream.KeyValueEntry) {
	p := r.progress[leaseKey]
	if e.Operation() != jetstream.KeyValuePut {
		if p != nil {
			p.done = true
		}
		return
	}
	var v events.SnapshotProgress
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return
	}
	if p == nil || p.backupID != v.BackupID {
		p = &progressSeen{backupID: v.BackupID}
		r.progress[leaseKey] = p
	}
	p.changedAt, p.done = r.watched, false
	r.pendingProgress = append(r.pendingProgress, leaseKey)
}

// echo advances the watched clock when one of this run's heartbeats comes
// back: every change stored before it has been seen.
func (r *run) echo(v []byte) {
	f := strings.Fields(string(v))
	if len(f) < 2 || f[0] != r.id {
		return
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return
	}
	sent := time.Duration(n)
	if sent <= r.lastSent {
		return
	}
	if r.lastSent >= 0 && sent-r.lastSent <= r.w.maxGap {
		r.watched += sent - r.lastSent
	}
	r.lastSent, r.lastEchoSent = sent, r.start.Add(sent)
	for _, k := range r.pending {
		if t := r.leases[k]; t != nil {
			t.changedAt = r.watched
		}
	}
	r.pending = r.pending[:0]
	for _, k := range r.pendingProgress {
		if p := r.progress[k]; p != nil {
			p.changedAt = r.watched
		}
	}
	r.pendingProgress = r.pendingProgress[:0]
}

func (r *run) drop(k string) {
	if t := r.leases[k]; t != nil && t.cancel != nil {
		t.cancel()
	}
	delete(r.leases, k)
	delete(r.progress, k)
}

func (r *run) judge(ctx context.Context, now time.Time) {
	cfg := r.w.cfg
	staleAfter := r.w.store.cfg.StaleAfter
	for k, t := range r.leases {
		if t.cancel != nil || (!t.lastCall.IsZero() && now.Sub(t.lastCall) < cfg.RefireAfter) {
			continue
		}
		var (
			cause  Cause
			reason string
		)
		switch silent := r.watched - t.changedAt; {
		case !now.Before(t.lease.Deadline):
			cause = CauseDeadline
			reason = fmt.Sprintf("frozen past its %s cap (deadline %s)", t.lease.MaxFreeze().Round(time.Millisecond), t.lease.Deadline.UTC().Format(time.RFC3339))
		case silent > staleAfter:
			cause = CauseStopped
			reason = fmt.Sprintf("holder %s stopped renewing %s ago", t.lease.Holder, silent.Round(100*time.Millisecond))
		default:
			var stalled bool
			if stalled, reason = r.snapshotStalled(k, t); !stalled {
				continue
			}
			cause = CauseSnapshotStalled
		}
		r.fire(ctx, k, t, cause, reason)
	}
}

// snapshotStalled judges a frozen lease by the snapshotters' progress
// reports.
func (r *run) snapshotStalled(k string, t *tracked) (bool, string) {
	stallAfter := r.w.cfg.SnapshotStallAfter
	if stallAfter <= 0 || t.lease.State != StateFrozen || !t.frozen {
		return false, ""
	}
	p := r.progress[k]
	switch {
	case p != nil && p.backupID == t.lease.BackupID && p.done:
		return false, "" // the snapshotter answered; the hooker resumes
	case p != nil && p.backupID == t.lease.BackupID:
		if silent := r.watched - p.changedAt; silent > stallAfter {
			return true, fmt.Sprintf("the snapshotter stopped reporting progress %s ago", silent.Round(100*time.Millisecond))
		}
	default:
		if frozen := r.watched - t.frozenAt; frozen > stallAfter {
			return true, fmt.Sprintf("no snapshotter reported progress in the %s since the freeze", frozen.Round(100*time.Millisecond))
		}
	}
	return false, ""
}

func (r *run) fire(ctx context.Context, k string, t *tracked, cause Cause, reason string) {
	r.seq++
	fctx, cancel := context.WithCancel(ctx)
	t.cancel, t.fireSeq, t.lastCall = cancel, r.seq, time.Now()
	t.attempts++
	st := Stale{Lease: t.lease, Revision: t.rev, Cause: cause, Reason: reason, Attempt: t.attempts}
	r.w.log.WarnContext(ctx, "freeze lease stale, requesting unlock",
		"backup_id", st.Lease.BackupID, "workload", st.Lease.Workload.String(), "holder", st.Lease.Holder,
		"state", st.Lease.State, "cause", cause, "reason", reason, "attempt", st.Attempt)
	seq := r.seq
	r.wg.Go(func() {
		defer cancel()
		err := r.w.onStale(fctx, st)
		select {
		case r.results <- fired{key: k, seq: seq, st: st, err: err}:
		case <-ctx.Done():
		}
	})
}

func (r *run) settle(ctx context.Context, f fired) {
	t := r.leases[f.key]
	if t == nil || t.fireSeq != f.seq {
		return // released or replaced meanwhile: nothing to retry
	}
	t.cancel = nil
	if f.err != nil {
		r.w.log.ErrorContext(ctx, "unlock request for a stale freeze lease failed; retrying",
			"backup_id", f.st.Lease.BackupID, "workload", f.st.Lease.Workload.String(),
			"retry_in", r.w.cfg.RefireAfter, "attempt", f.st.Attempt, "err", f.err)
	}
}
