package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

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

// discardUnlessGood deletes what a backup created, unless the backup ended
// with success: a late or duplicate delivery must never delete a good
// backup's snapshots.
func (s *Service) discardUnlessGood(ctx context.Context, ref events.BackupRef, log *slog.Logger) {
	if s.endedWell(ctx, ref) {
		log.InfoContext(ctx, "backup ended with success meanwhile; its snapshots are kept")
		return
	}
	s.discard(ctx, ref, log)
}
