package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// Fencing: a snapshot is a backup only if it was cut while the application
// was frozen. The hooker publishes Quiesced only once the freeze record says
// frozen, with the record's epoch, and moves the record to resuming before
// any post-hook runs. So the snapshotter
//
//   - cuts only when the record says frozen at that epoch (else the
//     Quiesced is late, redelivered or forged: it is terminated, and
//     nothing is created or deleted), and
//   - checks again after the cut: a record still frozen then proves the
//     freeze held through the cut. Otherwise what was cut is deleted and the
//     backup fails, unless it already ended with success (another delivery
//     of the same Quiesced finished it).

// errFreezeEnded marks a cut that the freeze did not outlast.
var errFreezeEnded = errors.New("the freeze ended before the cut was confirmed; its snapshots are deleted")

// checkFrozen checks q's freeze. A *events.NotFrozenError (events.ErrNotFrozen)
// is permanent; an error reading the record is transient.
func (s *Service) checkFrozen(ctx context.Context, q *events.Quiesced) error {
	err := s.book.CheckFrozen(ctx, q.BackupRef, q.FreezeEpoch)
	if err != nil && !errors.Is(err, events.ErrNotFrozen) {
		return &transientError{fmt.Errorf("read the freeze record: %w", err)}
	}
	return err
}

// endedWell reports whether ref's freeze ended with success.
func (s *Service) endedWell(ctx context.Context, ref events.BackupRef) bool {
	end, err := s.book.Ended(ctx, ref)
	return err == nil && end.Succeeded
}

// discardPatience is how long a failed backup's clean-up keeps trying
// while the API server does not answer (a restart takes seconds). The
// application is being resumed meanwhile: the wait costs no freeze.
const discardPatience = time.Minute

// discardPersistently deletes what a failed backup created, trying again
// for up to discardPatience. With unlessGood, a backup that ended with
// success meanwhile keeps everything: a late or duplicate delivery must
// never delete a good backup's snapshots. A clean-up that kept failing is
// returned, for a redelivery to try again.
func (s *Service) discardPersistently(ctx context.Context, ref events.BackupRef, unlessGood bool, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), discardPatience)
	defer cancel()
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		if unlessGood && s.endedWell(ctx, ref) {
			log.InfoContext(ctx, "backup ended with success meanwhile; its snapshots are kept")
			return nil
		}
		err := s.discard(ctx, ref, log)
		if err == nil {
			return nil
		}
		log.WarnContext(ctx, "could not delete the snapshots of the failed backup yet", "err", err, "retry_in", delay)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			log.ErrorContext(ctx, "could not delete the snapshots of the failed backup; delete them by hand", "selector", LabelBackupID+"="+LabelValue(ref.BackupID), "err", err)
			return err
		}
	}
}
