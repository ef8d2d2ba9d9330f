package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// DefaultBucket is the key-value bucket that holds the live freezes.
const DefaultBucket = events.FreezesBucket

// heartbeatKey is where watchdogs write their heartbeats. Workload keys
// always start with a DNS label, never with '_'.
const heartbeatKey = "_watchdog"

// Lease is a live freeze: the value of a workload's key (events.Freeze, the
// one definition of the record).
type Lease = events.Freeze

// State is where a live freeze is (events.FreezeState).
type State = events.FreezeState

// States of a live freeze.
const (
	StateFreezing = events.FreezeFreezing
	StateFrozen   = events.FreezeFrozen
	StateResuming = events.FreezeResuming
)

// transitions lists the state changes a holder may make; anything else is
// a bug in the caller, refused before it reaches the bucket. Writing the
// state a lease already has is a renewal.
var transitions = map[State][]State{
	StateFreezing: {StateFrozen, StateResuming},
	StateFrozen:   {StateResuming},
	// Back to frozen when the post-hook failed: the freeze is still on, and
	// the watchdogs must keep asking for a resume.
	StateResuming: {StateFrozen},
}

func allowed(from, to State) bool {
	if from == to {
		return true
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

func validate(l Lease) error {
	var errs []error
	errs = append(errs, events.ValidateBackupID(l.BackupID), l.Workload.Validate())
	if l.Holder == "" {
		errs = append(errs, errors.New("holder: required"))
	}
	if !l.State.Valid() {
		errs = append(errs, fmt.Errorf("state %q: want freezing, frozen or resuming", l.State))
	}
	if !l.Deadline.After(l.AcquiredAt) {
		errs = append(errs, errors.New("deadline: must be after acquiredAt"))
	}
	return errors.Join(errs...)
}

// Errors, to match with errors.Is.
var (
	// ErrHeld: another backup holds the workload's lease (see HeldError).
	ErrHeld = errors.New("workload is frozen by another backup")
	// ErrLost: the lease was released or taken over since this holder last
	// wrote it.
	ErrLost = errors.New("freeze lease lost")
	// ErrNotHeld: no lease, or none for that backup.
	ErrNotHeld = errors.New("no freeze lease")
	// ErrStalled: renewals kept failing for StaleAfter; the watchdogs may
	// already be unlocking.
	ErrStalled = errors.New("freeze lease renewals stalled")
	// ErrEnded: the backup's freeze has ended (see EndedError); it is never
	// frozen again.
	ErrEnded = errors.New("backup's freeze has ended")
)

// EndedError says how a backup's freeze ended. It matches ErrEnded.
type EndedError struct{ End events.FreezeEnd }

func (e *EndedError) Error() string {
	return fmt.Sprintf("backup %s of %s ended at %s (%s): it is never frozen again",
		e.End.BackupID, e.End.Workload, e.End.EndedAt.UTC().Format(time.RFC3339), e.End.Reason)
}

// Unwrap makes an EndedError match ErrEnded.
func (e *EndedError) Unwrap() error { return ErrEnded }

// HeldError says who holds a workload's lease. It matches ErrHeld.
type HeldError struct {
	Lease    Lease
	Revision uint64
	// Requester is the backup that asked for the lease.
	Requester string
}

func (e *HeldError) Error() string {
	l := e.Lease
	if l.BackupID == e.Requester {
		return fmt.Sprintf("backup %s already holds the freeze of %s on replica %s (%s since %s)",
			l.BackupID, l.Workload, l.Holder, l.State, l.AcquiredAt.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("%s is frozen by backup %s (replica %s, %s) since %s, until %s at the latest",
		l.Workload, l.BackupID, l.Holder, l.State,
		l.AcquiredAt.UTC().Format(time.RFC3339), l.Deadline.UTC().Format(time.RFC3339))
}

// Unwrap makes a HeldError match ErrHeld.
func (e *HeldError) Unwrap() error { return ErrHeld }

// Config configures the lease store.
type Config struct {
	// Bucket is the key-value bucket (default DefaultBucket).
	Bucket string
	// Replicas of the bucket's stream (default 1; 3 in a cluster).
	Replicas int
	// RenewEvery is how often a holder renews (default 1s).
	RenewEvery time.Duration
	// StaleAfter is how long a lease may go without a renewal before the
	// watchdog calls it stale (default 10s). It should ride out a stream
	// leader election.
	StaleAfter time.Duration
	// EndedTTL is how long the end of a freeze is remembered, so that a
	// redelivered or replayed request of that backup never freezes again:
	// as long as the event stream keeps requests (default 30 days, the
	// stream's default age); EndedForever keeps ends without a limit.
	EndedTTL time.Duration
}

// EndedForever, as Config.EndedTTL, keeps the ends of freezes for as long as
// the bucket exists (for a stream that keeps its events for ever).
const EndedForever time.Duration = -1

// validUntil is how long l vouches for its freeze once written: half the
// stale period past its renewal (a holder stalls at that point and may
// resume by itself), never past its deadline.
func (c Config) validUntil(l Lease) time.Time {
	v := l.RenewedAt.Add(c.StaleAfter / 2)
	if !l.Deadline.IsZero() && l.Deadline.Before(v) {
		v = l.Deadline
	}
	return v.UTC().Round(0)
}

func (c Config) withDefaults() (Config, error) {
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.RenewEvery == 0 {
		c.RenewEvery = time.Second
	}
	if c.StaleAfter == 0 {
		c.StaleAfter = 10 * time.Second
	}
	if c.EndedTTL == 0 {
		c.EndedTTL = 30 * 24 * time.Hour
	}
	if c.RenewEvery < 0 || c.StaleAfter < 2*c.RenewEvery {
		return c, fmt.Errorf("lease config: StaleAfter (%s) must be at least twice RenewEvery (%s)", c.StaleAfter, c.RenewEvery)
	}
	return c, nil
}

// Store reads and writes freeze leases, and the ends of freezes.
type Store struct {
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	ended jetstream.KeyValue
	cfg   Config
}

// Open returns a store over the lease bucket and the backups bucket, which
// `freezeframe setup` creates (events.Setup): a missing one is an error
// wrapping events.ErrNotSetUp.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	kv, err := events.BindKeyValue(ctx, js, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("open lease bucket: %w", err)
	}
	ended, err := events.BindKeyValue(ctx, js, events.BackupsBucket)
	if err != nil {
		return nil, fmt.Errorf("open backups bucket: %w", err)
	}
	return &Store{js: js, kv: kv, ended: ended, cfg: cfg}, nil
}

// Bind returns a store over an existing bucket without creating or
// reconfiguring it, for readers such as `freezeframe status`. Only Get and
// List are meant for it.
func Bind(ctx context.Context, js jetstream.JetStream, bucket string) (*Store, error) {
	cfg, err := Config{Bucket: bucket}.withDefaults()
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("lease bucket %s: %w", cfg.Bucket, err)
	}
	s := &Store{js: js, kv: kv, cfg: cfg}
	if ended, err := js.KeyValue(ctx, events.BackupsBucket); err == nil {
		s.ended = ended // absent on a hooker older than the bucket: Ended then says ErrNotEnded
	}
	return s, nil
}

// Config returns the store's configuration, defaults applied.
func (s *Store) Config() Config { return s.cfg }

// key returns the lease key of a workload (events.FreezeKey), and the
// workload with its kind normalised.
func key(w events.Workload) (events.Workload, string, error) {
	if k, err := events.NormalizeKind(w.Kind); err == nil {
		w.Kind = k
	}
	k, err := events.FreezeKey(w)
	if err != nil {
		return w, "", fmt.Errorf("lease key: %w", err)
	}
	return w, k, nil
}

func now() time.Time { return time.Now().UTC().Round(0) }

// Acquire takes the workload's lease for l.BackupID. l needs BackupID,
// Workload, Holder and Deadline; AcquiredAt defaults to now and State to
// StateFreezing. The hold's Epoch is the revision that created the key.
//
// A backup whose freeze has ended is refused with an *EndedError
// (ErrEnded), also when the lease was taken meanwhile: the end is written
// before the lease is deleted, so checking it after the Create cannot miss
// an end that made the Create possible.
//
// If the same backup already holds the lease on the same holder (a
// redelivered request), Acquire returns a Hold on the existing lease, with
// its original AcquiredAt, Deadline and State. Otherwise a held lease gives
// a *HeldError (errors.Is ErrHeld); its Lease.BackupID tells whether it is
// the same backup on another replica.
func (s *Store) Acquire(ctx context.Context, l Lease) (*Hold, error) {
	w, k, err := key(l.Workload)
	if err != nil {
		return nil, err
	}
	l.Workload = w
	t := now()
	if l.AcquiredAt.IsZero() {
		l.AcquiredAt = t
	}
	l.AcquiredAt = l.AcquiredAt.UTC().Round(0)
	l.Deadline = l.Deadline.UTC().Round(0)
	l.RenewedAt = t
	l.ValidUntil = s.cfg.validUntil(l)
	if l.State == "" {
		l.State = StateFreezing
	}
	if err := validate(l); err != nil {
		return nil, fmt.Errorf("acquire lease: %w", err)
	}
	data, err := json.Marshal(l)
	if err != nil {
		return nil, fmt.Errorf("acquire lease: %w", err)
	}
	ref := events.BackupRef{BackupID: l.BackupID, Workload: w}
	if err := s.refuseEnded(ctx, ref); err != nil {
		return nil, err
	}
	for attempt := range acquireAttempts {
		rev, err := s.kv.Create(ctx, k, data)
		if err == nil {
			h := s.newHold(k, l, rev, rev)
			if err := s.refuseEnded(ctx, ref); err != nil {
				if rerr := h.Release(context.WithoutCancel(ctx)); rerr != nil {
					return nil, errors.Join(err, rerr)
				}
				return nil, err
			}
			return h, nil
		}
		if !isConflict(err) {
			return nil, fmt.Errorf("acquire lease of %s: %w", w, err)
		}
		cur, curRev, err := s.get(ctx, k)
		if errors.Is(err, ErrNotHeld) {
			// Released between our Create and Get, or, in a replicated
			// bucket, read from a replica that has not yet applied the
			// Create that beat ours: give it a moment and try again.
			select {
			case <-time.After(time.Duration(attempt+1) * time.Millisecond):
			case <-ctx.Done():
				return nil, fmt.Errorf("acquire lease of %s: %w", w, ctx.Err())
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("acquire lease of %s: %w", w, err)
		}
		if cur.BackupID == l.BackupID && cur.Holder == l.Holder {
			return s.newHold(k, cur, curRev, cur.Epoch), nil
		}
		return nil, &HeldError{Lease: cur, Revision: curRev, Requester: l.BackupID}
	}
	return nil, fmt.Errorf("acquire lease of %s: it kept changing hands", w)
}

// refuseEnded returns an *EndedError when ref's freeze has ended.
func (s *Store) refuseEnded(ctx context.Context, ref events.BackupRef) error {
	end, err := s.Ended(ctx, ref)
	switch {
	case err == nil:
		return &EndedError{End: end}
	case errors.Is(err, events.ErrNotEnded):
		return nil
	}
	return fmt.Errorf("acquire lease of %s: %w", ref.Workload, err)
}

// Ended returns how ref's freeze ended, or events.ErrNotEnded.
func (s *Store) Ended(ctx context.Context, ref events.BackupRef) (events.FreezeEnd, error) {
	if s.ended == nil {
		return events.FreezeEnd{}, fmt.Errorf("backup %s: %w (no %s bucket)", ref.BackupID, events.ErrNotEnded, events.BackupsBucket)
	}
	return events.ReadFreezeEnd(ctx, s.ended, ref)
}

// End records how a backup's freeze ended, for a backup that holds no
// lease (it failed before freezing, or its lease is gone already). The
// first end recorded stays: a second call keeps it and returns nil.
func (s *Store) End(ctx context.Context, end events.FreezeEnd) error {
	ref := events.BackupRef{BackupID: end.BackupID, Workload: end.Workload}
	k, err := events.FreezeEndKey(ref)
	if err != nil {
		return err
	}
	if end.EndedAt.IsZero() {
		end.EndedAt = now()
	}
	data, err := json.Marshal(end)
	if err != nil {
		return fmt.Errorf("record end of backup %s: %w", end.BackupID, err)
	}
	if _, err := s.ended.Create(ctx, k, data); err != nil && !isConflict(err) {
		return fmt.Errorf("record end of backup %s: %w", end.BackupID, err)
	}
	return nil
}

// TakeOver makes holder the holder of backupID's lease, in StateResuming,
// for a replica that resumes a backup another replica froze. The previous
// holder's next write fails with ErrLost. ErrNotHeld if the backup holds no
// lease any more.
func (s *Store) TakeOver(ctx context.Context, w events.Workload, backupID, holder string) (*Hold, error) {
	w, k, err := key(w)
	if err != nil {
		return nil, err
	}
	if holder == "" {
		return nil, errors.New("take over lease: holder required")
	}
	for range 5 {
		cur, rev, err := s.get(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("take over lease of %s: %w", w, err)
		}
		if cur.BackupID != backupID {
			return nil, fmt.Errorf("take over lease of %s: %w for backup %s (held by backup %s)", w, ErrNotHeld, backupID, cur.BackupID)
		}
		cur.Holder, cur.State, cur.RenewedAt = holder, StateResuming, now()
		data, err := json.Marshal(cur)
		if err != nil {
			return nil, err
		}
		nrev, err := s.kv.Update(ctx, k, data, rev)
		if err == nil {
			return s.newHold(k, cur, nrev, cur.Epoch), nil
		}
		if !isConflict(err) {
			return nil, fmt.Errorf("take over lease of %s: %w", w, err)
		}
	}
	return nil, fmt.Errorf("take over lease of %s: it kept changing", w)
}

// Release deletes the workload's lease if backupID still holds it. A lease
// already gone, or now held by another backup, is not an error: backupID's
// freeze is over either way.
func (s *Store) Release(ctx context.Context, w events.Workload, backupID string) error {
	w, k, err := key(w)
	if err != nil {
		return err
	}
	return s.release(ctx, k, w, backupID)
}

func (s *Store) release(ctx context.Context, k string, w events.Workload, backupID string) error {
	for range 10 {
		cur, rev, err := s.get(ctx, k)
		if errors.Is(err, ErrNotHeld) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("release lease of %s: %w", w, err)
		}
		if cur.BackupID != backupID {
			return nil
		}
		err = s.kv.Delete(ctx, k, jetstream.LastRevision(rev))
		if err == nil {
			return nil
		}
		if !isConflict(err) {
			return fmt.Errorf("release lease of %s: %w", w, err)
		}
		// Renewed meanwhile: read the new revision and try again.
	}
	return fmt.Errorf("release lease of %s: it kept changing", w)
}

// Get returns the workload's lease and its revision, or ErrNotHeld.
func (s *Store) Get(ctx context.Context, w events.Workload) (Lease, uint64, error) {
	w, k, err := key(w)
	if err != nil {
		return Lease{}, 0, err
	}
	l, rev, err := s.get(ctx, k)
	if err != nil {
		return Lease{}, 0, fmt.Errorf("get lease of %s: %w", w, err)
	}
	return l, rev, nil
}

// acquireAttempts bounds Acquire's Create-then-Get loop; with its pauses
// (1ms, 2ms, ...) the last attempt comes about 0.2s after the first.
const acquireAttempts = 20

func (s *Store) get(ctx context.Context, k string) (Lease, uint64, error) {
	e, err := s.kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Lease{}, 0, ErrNotHeld
	}
	if err != nil {
		return Lease{}, 0, err
	}
	l, err := decode(e.Value())
	if err != nil {
		return Lease{}, 0, fmt.Errorf("key %s: %w", k, err)
	}
	return l, e.Revision(), nil
}

// List returns every current lease, for status displays. Values that do not
// decode are skipped and reported in the error, alongside the others.
func (s *Store) List(ctx context.Context) ([]Lease, error) {
	wt, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	defer stopWatch(wt)
	var (
		out  []Lease
		errs []error
	)
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list leases: %w", ctx.Err())
		case e, ok := <-wt.Updates():
			if !ok {
				return nil, errors.New("list leases: watch closed")
			}
			if e == nil {
				return out, errors.Join(errs...)
			}
			if !isLeaseKey(e.Key()) {
				continue
			}
			l, err := decode(e.Value())
			if err != nil {
				errs = append(errs, fmt.Errorf("key %s: %w", e.Key(), err))
				continue
			}
			out = append(out, l)
		}
	}
}

func isLeaseKey(k string) bool { return !strings.HasPrefix(k, "_") }

func decode(b []byte) (Lease, error) {
	var l Lease
	if err := json.Unmarshal(b, &l); err != nil {
		return Lease{}, fmt.Errorf("decode lease: %w", err)
	}
	return l, nil
}

// isConflict reports a failed compare-and-set. Create reports it as
// ErrKeyExists, Update and Delete as ErrKeyRevisionMismatch, except that
// Create over a deleted key returns the bare API error, whose code is 10071
// on a single replica and 10164 on a replicated bucket.
func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
