package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The freeze record: where a backup's freeze is, owned by the hooker replica
// that holds it, read by the snapshotter (to cut only inside a freeze), by
// retention (to count only backups that resumed with success) and by the
// CLI. Its keys, values and buckets are defined here, once.
//
// A freeze lives in two places, one after the other:
//
//   - while it is live, the workload's key in [FreezesBucket] holds a
//     [Freeze] (freezing, frozen, resuming); one key per workload, so that a
//     workload is never frozen twice at once;
//   - once it ended, the backup's key in [BackupsBucket] holds a
//     [FreezeEnd] (resumed or failed), kept for the bucket's TTL. It is
//     written before the live key is deleted, so a backup id that ever
//     reached freezing is never frozen again.

// FreezesBucket is the key-value bucket of live freezes: one key per frozen
// workload ([FreezeKey]), written by the hooker replica holding the freeze
// and judged by the watchdogs. The snapshotter's progress reports live
// beside them under [SnapshotProgressPrefix].
const FreezesBucket = "freezeframe-freezes"

// BackupsBucket is the key-value bucket of ended freezes: one key per
// backup ([FreezeEndKey]).
const BackupsBucket = "freezeframe-backups"

// FreezeState is where a live freeze is.
type FreezeState string

// States of a live freeze. requested → freezing → frozen → resuming →
// ended (a FreezeEnd); a failed pre-hook goes from freezing to resuming.
const (
	// FreezeFreezing: the lease is taken, the pre-hook runs.
	FreezeFreezing FreezeState = "freezing"
	// FreezeFrozen: the pre-hook succeeded; the only state in which a
	// snapshot may be cut.
	FreezeFrozen FreezeState = "frozen"
	// FreezeResuming: the post-hook runs (or is about to).
	FreezeResuming FreezeState = "resuming"
)

// Valid reports a known state.
func (s FreezeState) Valid() bool {
	return s == FreezeFreezing || s == FreezeFrozen || s == FreezeResuming
}

// Freeze is the value of a workload's key in FreezesBucket.
type Freeze struct {
	BackupID string   `json:"backupId"`
	Workload Workload `json:"workload"`
	// Holder is the hooker replica that runs the hooks and renews the lease.
	Holder string      `json:"holder"`
	State  FreezeState `json:"state"`
	// Epoch is the key revision at which this freeze took the workload's
	// key: it names this freeze and no other, and is its fencing token.
	// Zero until the first write after the key was created.
	Epoch uint64 `json:"epoch,omitempty"`
	// AcquiredAt is when the lease was taken, just before the pre-hook.
	AcquiredAt time.Time `json:"acquiredAt"`
	// Deadline is the hard freeze cap: AcquiredAt plus the maximum freeze.
	// It never moves.
	Deadline time.Time `json:"deadline"`
	// RenewedAt is the holder's clock at its last renewal, for humans; the
	// watchdog judges staleness by revision changes on its own clock.
	RenewedAt time.Time `json:"renewedAt"`
	// ValidUntil is how long this record vouches for the freeze: the
	// Deadline, or half the stale period after RenewedAt, whichever comes
	// first. Past it the holder may resume the application without first
	// writing resuming (the bucket may be electing a leader, or out of
	// reach), so nobody may count the application frozen on this record's
	// word any more. Zero in records written before it existed.
	ValidUntil time.Time `json:"validUntil,omitzero"`
}

// FreezeClockTolerance is how far apart the clocks of the hooker and of
// the readers of its record (the snapshotter) may be: a holder resumes
// without writing resuming only this long after ValidUntil has passed on
// its own clock.
const FreezeClockTolerance = 250 * time.Millisecond

// MaxFreeze is the freeze cap the lease was taken with.
func (f Freeze) MaxFreeze() time.Duration { return f.Deadline.Sub(f.AcquiredAt) }

// FreezeEnd is the value of a backup's key in BackupsBucket: how its freeze
// ended.
type FreezeEnd struct {
	BackupID string   `json:"backupId"`
	Workload Workload `json:"workload"`
	Epoch    uint64   `json:"epoch,omitempty"`
	// Succeeded: resumed after a snapshot cut while frozen. Only such
	// backups are consistent, and only they count for retention.
	Succeeded bool `json:"succeeded"`
	// Reason is the Resumed reason (ResumeAfterSnapshot, ...) when Resumed,
	// else why the backup failed.
	Reason string `json:"reason"`
	// Resumed: the post-hook ran; false when nothing was frozen.
	Resumed bool `json:"resumed"`
	// Step is the step that failed when nothing was frozen.
	Step string `json:"step,omitempty"`
	// FrozenFor is from the end of the pre-hook to the start of the post-hook.
	FrozenFor Duration  `json:"frozenFor,omitempty"`
	EndedAt   time.Time `json:"endedAt"`
}

// FreezeKey is the key of a workload's live freeze: its Workload.Key with
// the kind normalised, so that "deploy/x" and "Deployment/x" share one key.
func FreezeKey(w Workload) (string, error) {
	if k, err := NormalizeKind(w.Kind); err == nil {
		w.Kind = k
	}
	if err := w.Validate(); err != nil {
		return "", fmt.Errorf("freeze key: %w", err)
	}
	return w.Key(), nil
}

// FreezeEndKey is the key of a backup's ended freeze: the workload's freeze
// key, then the backup id, so that one id used for two workloads makes two
// backups.
func FreezeEndKey(ref BackupRef) (string, error) {
	k, err := FreezeKey(ref.Workload)
	if err != nil {
		return "", err
	}
	if err := ValidateBackupID(ref.BackupID); err != nil {
		return "", fmt.Errorf("freeze end key: %w", err)
	}
	return k + "." + ref.BackupID, nil
}

// SnapshotProgressPrefix starts the key under which the snapshotter reports
// that the snapshot of a frozen workload is progressing. Freeze keys never
// start with '_'.
const SnapshotProgressPrefix = "_snapshot."

// SnapshotProgressKey is the progress key of a workload: the prefix, then
// the workload's freeze key.
func SnapshotProgressKey(w Workload) (string, error) {
	k, err := FreezeKey(w)
	if err != nil {
		return "", err
	}
	return SnapshotProgressPrefix + k, nil
}

// SnapshotProgress is the value of a progress key, rewritten every second or
// so while a snapshotter replica creates a frozen workload's snapshots and
// waits for the cut, and deleted when it is done. A watchdog that sees it
// go silent while the workload is frozen knows the snapshot no longer
// progresses and resumes the application without waiting for the freeze
// cap.
type SnapshotProgress struct {
	BackupID string `json:"backupId"`
	// Replica is the snapshotter replica doing the work.
	Replica   string    `json:"replica"`
	RenewedAt time.Time `json:"renewedAt"`
}

// Errors of the freeze record readers, to match with errors.Is.
var (
	// ErrNotFrozen: the backup's freeze is not (or no longer) frozen at the
	// epoch asked about; see NotFrozenError.
	ErrNotFrozen = errors.New("not frozen")
	// ErrNotEnded: the backup's freeze has not ended (or never began).
	ErrNotEnded = errors.New("freeze not ended")
)

// NotFrozenError says why a backup is not frozen. It matches ErrNotFrozen.
type NotFrozenError struct {
	Ref   BackupRef
	Epoch uint64
	// Why is for humans: "resuming", "held by backup X", "ended: ...".
	Why string
	// Held: this freeze still holds the workload, but its record is past
	// ValidUntil. Its holder may be about to resume it; nobody may cut,
	// and the backup should fail now rather than wait for its cap.
	Held bool
}

func (e *NotFrozenError) Error() string {
	epoch := ""
	if e.Epoch != 0 {
		epoch = " (epoch " + strconv.FormatUint(e.Epoch, 10) + ")"
	}
	return fmt.Sprintf("backup %s of %s is not frozen%s: %s", e.Ref.BackupID, e.Ref.Workload, epoch, e.Why)
}

// Unwrap makes a NotFrozenError match ErrNotFrozen.
func (e *NotFrozenError) Unwrap() error { return ErrNotFrozen }

// FreezeBook reads the freeze record for services other than the hooker,
// and carries the snapshotter's progress reports. It binds the buckets on
// first use: the hooker creates them and may start later.
type FreezeBook struct {
	js jetstream.JetStream

	mu     sync.Mutex
	live   jetstream.KeyValue
	ended  jetstream.KeyValue
	bucket string
}

// NewFreezeBook returns a reader over the freeze buckets of js; liveBucket
// is FreezesBucket when empty.
func NewFreezeBook(js jetstream.JetStream, liveBucket string) *FreezeBook {
	if liveBucket == "" {
		liveBucket = FreezesBucket
	}
	return &FreezeBook{js: js, bucket: liveBucket}
}

func (b *FreezeBook) buckets(ctx context.Context) (live, ended jetstream.KeyValue, err error) {
	b.mu.Lock()
	live, ended = b.live, b.ended
	b.mu.Unlock()
	// Bound without the lock: a bind waiting for NATS must not hold up
	// readers of buckets already bound.
	bind := func(name string) (kv jetstream.KeyValue, err error) {
		err = retryRead(ctx, func(ctx context.Context) error {
			kv, err = b.js.KeyValue(ctx, name)
			return err
		})
		return kv, err
	}
	if live == nil {
		if live, err = bind(b.bucket); err != nil {
			return nil, nil, fmt.Errorf("freeze bucket %s: %w", b.bucket, err)
		}
	}
	if ended == nil {
		if ended, err = bind(BackupsBucket); err != nil {
			return nil, nil, fmt.Errorf("backups bucket %s: %w", BackupsBucket, err)
		}
	}
	b.mu.Lock()
	b.live, b.ended = live, ended
	b.mu.Unlock()
	return live, ended, nil
}

// Bind binds the buckets now, retrying until they exist (the hooker
// creates them) or ctx ends, so that the first backup's check does not pay
// for it inside its freeze.
func (b *FreezeBook) Bind(ctx context.Context) error {
	for {
		_, _, err := b.buckets(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return err
		}
	}
}

// recordAttempt bounds one read of the freeze buckets. A request sent just
// before the server it went to died gets no reply, and nats.go waits out
// its whole timeout for it; the next attempt goes over the reconnected
// connection, or to another replica.
const recordAttempt = time.Second

// retryRead runs read in attempts of recordAttempt until it returns an
// answer (nil, or any error but a timeout or no responders) or ctx ends.
func retryRead(ctx context.Context, read func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, recordAttempt)
		err := read(actx)
		timedOut := actx.Err() != nil
		cancel()
		unanswered := timedOut || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoStreamResponse)
		if err == nil || !unanswered || ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
	}
}

// getEntry reads key from kv, retrying unanswered reads (retryRead).
func getEntry(ctx context.Context, kv jetstream.KeyValue, key string) (e jetstream.KeyValueEntry, err error) {
	err = retryRead(ctx, func(ctx context.Context) error {
		e, err = kv.Get(ctx, key)
		return err
	})
	return e, err
}

// CheckFrozen returns nil when ref's freeze is frozen at epoch (any epoch
// when epoch is zero), a *NotFrozenError (ErrNotFrozen) when it is not, or
// another error when the record cannot be read. A record still freezing,
// as created at epoch, counts as frozen for a Quiesced of that epoch: the
// hooker publishes Quiesced while it writes frozen.
func (b *FreezeBook) CheckFrozen(ctx context.Context, ref BackupRef, epoch uint64) error {
	live, ended, err := b.buckets(ctx)
	if err != nil {
		return err
	}
	k, err := FreezeKey(ref.Workload)
	if err != nil {
		return err
	}
	notFrozen := func(why string) error { return &NotFrozenError{Ref: ref, Epoch: epoch, Why: why} }
	e, err := getEntry(ctx, live, k)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		if end, eerr := readEnd(ctx, ended, ref); eerr == nil {
			return notFrozen("its freeze ended (" + end.Reason + ")")
		}
		return notFrozen("no freeze holds the workload")
	case err != nil:
		return fmt.Errorf("read freeze of %s: %w", ref.Workload, err)
	}
	var f Freeze
	if err := json.Unmarshal(e.Value(), &f); err != nil {
		return fmt.Errorf("read freeze of %s: %w", ref.Workload, err)
	}
	held := f.Epoch
	if held == 0 {
		held = e.Revision() // not written since its Create, whose revision is the epoch
	}
	switch {
	case f.BackupID != ref.BackupID:
		return notFrozen("the workload is held by backup " + f.BackupID)
	case epoch != 0 && held != epoch:
		return notFrozen("the workload is held by another freeze of this backup")
	case !f.ValidUntil.IsZero() && !time.Now().Before(f.ValidUntil):
		return &NotFrozenError{Ref: ref, Epoch: epoch, Held: true,
			Why: "its record vouches for it only until " + f.ValidUntil.UTC().Format(time.RFC3339Nano) + " (deadline passed, or the holder's renewals are overdue)"}
	case f.State == FreezeFrozen:
		return nil
	case f.State == FreezeFreezing && epoch != 0:
		// The hooker publishes Quiesced while it writes frozen: a Quiesced
		// at this epoch proves the pre-hook succeeded.
		return nil
	}
	return notFrozen("its freeze is " + string(f.State))
}

// Ended returns how ref's freeze ended, or ErrNotEnded.
func (b *FreezeBook) Ended(ctx context.Context, ref BackupRef) (FreezeEnd, error) {
	_, ended, err := b.buckets(ctx)
	if err != nil {
		return FreezeEnd{}, err
	}
	return readEnd(ctx, ended, ref)
}

// ReadFreezeEnd reads a backup's FreezeEnd from the backups bucket kv:
// ErrNotEnded when there is none.
func ReadFreezeEnd(ctx context.Context, kv jetstream.KeyValue, ref BackupRef) (FreezeEnd, error) {
	return readEnd(ctx, kv, ref)
}

func readEnd(ctx context.Context, kv jetstream.KeyValue, ref BackupRef) (FreezeEnd, error) {
	k, err := FreezeEndKey(ref)
	if err != nil {
		return FreezeEnd{}, err
	}
	e, err := getEntry(ctx, kv, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return FreezeEnd{}, fmt.Errorf("backup %s of %s: %w", ref.BackupID, ref.Workload, ErrNotEnded)
	}
	if err != nil {
		return FreezeEnd{}, fmt.Errorf("read end of backup %s: %w", ref.BackupID, err)
	}
	var end FreezeEnd
	if err := json.Unmarshal(e.Value(), &end); err != nil {
		return FreezeEnd{}, fmt.Errorf("read end of backup %s: %w", ref.BackupID, err)
	}
	return end, nil
}

// ReportSnapshotProgress writes replica's progress on ref's snapshot.
func (b *FreezeBook) ReportSnapshotProgress(ctx context.Context, ref BackupRef, replica string) error {
	live, _, err := b.buckets(ctx)
	if err != nil {
		return err
	}
	k, err := SnapshotProgressKey(ref.Workload)
	if err != nil {
		return err
	}
	v, err := json.Marshal(SnapshotProgress{BackupID: ref.BackupID, Replica: replica, RenewedAt: time.Now().UTC()})
	if err != nil {
		return err
	}
	_, err = live.Put(ctx, k, v)
	return err
}

// ClearSnapshotProgress deletes the progress key of w.
func (b *FreezeBook) ClearSnapshotProgress(ctx context.Context, w Workload) error {
	live, _, err := b.buckets(ctx)
	if err != nil {
		return err
	}
	k, err := SnapshotProgressKey(w)
	if err != nil {
		return err
	}
	if err := live.Delete(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	return nil
}
