package notify

import (
	"context"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// History finds the earlier events of a backup, to say in a message what
// the terminal event does not (snapshots, the failed step, total time).
type History interface {
	// Lookup returns the last event of kind k for the backup, or an error
	// wrapping events.ErrNoEvent.
	Lookup(ctx context.Context, k events.Kind, ref events.BackupRef) (events.Event, error)
}
