package notify

import (
	"context"
	"errors"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// Notifiers notifies through each in turn. Each must deduplicate on its
// own: a retry after one failed calls all of them again.
type Notifiers []Notifier

// Notify implements Notifier.
func (ns Notifiers) Notify(ctx context.Context, ev events.Event) error {
	var errs []error
	for _, n := range ns {
		if err := n.Notify(ctx, ev); err != nil {
			errs = append(errs, err)
		}
	}
	// One permanent failure must not stop a retry that another needs.
	var retry []error
	for _, err := range errs {
		if !events.IsPermanent(err) {
			retry = append(retry, err)
		}
	}
	if len(retry) > 0 {
		return errors.Join(retry...)
	}
	return errors.Join(errs...)
}
