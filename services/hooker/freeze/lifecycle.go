package freeze

// Design: one freeze lifecycle, owned by the freeze record.
//
// A backup's freeze is one record, in the lease bucket (lease package,
// record type events.Freeze), moved through these states by the replica
// that holds it, each move a compare-and-set on the key's revision:
//
//	requested ──prepare──▶ (resolve failed) ─────────────────────────▶ ended: failed, nothing frozen
//	    │
//	    └─Acquire──▶ freezing ──pre-hook ok──▶ frozen ──Snapshotted / unlock──▶ resuming ──post-hook──▶ ended
//	                    │                                                          ▲    │
//	                    └──────────pre-hook failed / restart mid pre-hook──────────┘    └─post-hook failed─▶ frozen
//
// The files follow the states: freeze.go (requested → freezing → frozen),
// resume.go (frozen → resuming → ended), takeover.go (a replica resumes a
// freeze whose holder is gone), unlock.go (the watchdog's and the
// operator's unlocks), arm.go (the post-hook armed before the freeze) and
// bound.go (what dies with the holder); service.go is the wiring.
//
// Invariants, and what keeps each:
//
//   - Never two freezes of one workload: the live record is one key per
//     workload, created by Acquire only when absent.
//   - A backup is frozen at most once: its end is recorded (events.FreezeEnd,
//     in the backups bucket) before its live record is deleted, and Acquire
//     refuses a backup whose end is recorded, also when a redelivered,
//     replayed or forged request arrives long after the stream's duplicate
//     window.
//   - A snapshot is cut only inside the freeze: Quiesced carries the
//     record's epoch (the revision that created it, its fencing token), and
//     it is published only after the record says frozen. The snapshotter
//     cuts only while the record says frozen at that epoch, and checks it
//     again after the cut; every resume moves the record to resuming before
//     the post-hook runs, so a cut that passed the second check was made
//     while the application was frozen.
//   - Only the holder acts: a replica runs a post-hook only after its
//     compare-and-set to resuming succeeded. A replica that lost its lease
//     (lease.ErrLost: taken over, or ended) drops the freeze from memory and
//     ends its own lock sessions, never a later backup's freeze.
//   - Nothing stays frozen: the watchdog in every replica asks for an unlock
//     of a record past its deadline, whose holder stopped renewing, or whose
//     snapshot stopped progressing; its UnlockRequested names the record's
//     revision, so a new attempt after a failed post-hook is a new event. A
//     holder cut off from NATS resumes by itself at half the stale period,
//     before any watchdog may take its freeze over.
//
//   - A fired dead man's switch never thaws a later freeze: the post-hook's
//     execs are armed (arm.go, package armed) before the admission wait
//     and the pre-hook, and run by themselves when their stream ends, but
//     only until a fire limit: 0 until the lease is acquired, then the
//     record's ValidUntil less the clock tolerance, pushed forward after
//     every stored write of the record (lease.Hold.OnStored). A later freeze of the workload needs
//     this record ended, which without this holder takes a takeover, which
//     takes the record gone stale: after ValidUntil.
//   - A snapshot is never called consistent when what held the freeze in
//     the holder's streams ended before the resume: a lost lock session, a
//     lost arm (ended before the resume: fired, stream broken, pod
//     restarted; checked after the pre-hook and at the resume), or a holder
//     gone with either (bound.go, one rule for both). Such a backup fails
//     and its post-hook runs again: at least once.
//
// Memory (ops) is a cache of the record for the replica that froze: the
// plan (with its armed post-hook execs), the hold and the lock sessions,
// so that between freeze and resume there is no Kubernetes API call but
// the exec itself, and for an armed post-hook not even that: one write on
// its open stream. Each backup has one op, and one transition runs on it
// at a time.

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/services/hooker/admission"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

// backupKey names a backup within this replica: its workload and its id,
// so that one id used for two workloads makes two backups.
func backupKey(ref events.BackupRef) string {
	return ref.Workload.Key() + "/" + ref.BackupID
}

// op is this replica's part in one backup's freeze.
type op struct {
	ref events.BackupRef
	// turn admits one transition at a time (a buffered channel of one, so
	// that waiting for it honours ctx).
	turn chan struct{}

	// Set during transitions, read by whoever holds the turn.
	plan       *plan
	hold       *lease.Hold
	quiescedAt time.Time
	stopKeep   context.CancelFunc
	takenOver  bool // resumed for a replica that is gone (or this one before a restart)
	// armedInPod: the Quiesced of a freeze taken over said its post-hook
	// was armed (holderBoundLoss).
	armedInPod bool
	// resumeHooks are the post-hook runs, for Resumed.
	resumeHooks []events.HookRun
	// deadline is the holder's own backstop for the freeze cap (armDeadline).
	deadline *time.Timer
	// end is set once the end is recorded; the op then only finishes
	// (Resumed published, lease released).
	end *events.FreezeEnd
	// slot is the op's room on its storage (admission.go), from before the
	// lease to the op's removal; nil for an op that was not admitted here
	// (a takeover). Atomic: a cut is reported to it without the turn.
	slot atomic.Pointer[admission.Slot]
}

// take waits for the op's turn; false when ctx ended first.
func (o *op) take(ctx context.Context) bool {
	select {
	case o.turn <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (o *op) give() { <-o.turn }

// disarm stops the deadline backstop.
func (o *op) disarm() {
	if o.deadline != nil {
		o.deadline.Stop()
	}
}

// ops is the replica's set of ops, by backupKey.
type ops struct {
	mu sync.Mutex
	m  map[string]*op
}

// get returns the op of ref, or nil.
func (o *ops) get(ref events.BackupRef) *op {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m[backupKey(ref)]
}

// getOrAdd returns the op of ref, adding one if there is none.
func (o *ops) getOrAdd(ref events.BackupRef) *op {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[string]*op{}
	}
	k := backupKey(ref)
	if x, ok := o.m[k]; ok {
		return x
	}
	x := &op{ref: ref, turn: make(chan struct{}, 1)}
	o.m[k] = x
	return x
}

// takeTurn returns ref's op (added if there is none) with its turn taken.
// An op removed while this caller waited for its turn belongs to a
// transition that has finished; the caller starts over with a fresh op,
// so it sees what that transition left (an ended record), not a stale
// op.
func (o *ops) takeTurn(ctx context.Context, ref events.BackupRef) (*op, bool) {
	for {
		x := o.getOrAdd(ref)
		if !x.take(ctx) {
			return nil, false
		}
		o.mu.Lock()
		current := o.m[backupKey(ref)] == x
		o.mu.Unlock()
		if current {
			return x, true
		}
		x.give()
	}
}

// remove forgets x (and only x: a later op of the same key stays), and
// gives back its admission slot: every end of an op passes here, so this
// is the one place a freeze leaves its storage's count.
func (o *ops) remove(x *op) {
	x.slot.Load().Release()
	o.mu.Lock()
	defer o.mu.Unlock()
	if k := backupKey(x.ref); o.m[k] == x {
		delete(o.m, k)
	}
}

// all returns every op, for shutdown.
func (o *ops) all() []*op {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]*op, 0, len(o.m))
	for _, x := range o.m {
		out = append(out, x)
	}
	return out
}
