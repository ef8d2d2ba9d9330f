package chaos

import (
	"context"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// storedEvents reads the backup's stored events, oldest first, each call
// bounded by ctx (events.Client.List: not an ordered consumer, whose reset
// after a lost node retries without end).
func (r *rowRun) storedEvents(ctx context.Context) ([]events.Event, error) {
	return r.client.List(ctx, events.Filter{BackupID: r.id}, events.SubscribeOptions{FromStart: true})
}
