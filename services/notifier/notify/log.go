package notify

import (
	"context"
	"log/slog"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// LogNotifier writes one log record per backup: info when it succeeded,
// warn when it failed or its freeze had to be forced to end.
type LogNotifier struct{ log *slog.Logger }

// NewLogNotifier returns a notifier that writes to log.
func NewLogNotifier(log *slog.Logger) *LogNotifier { return &LogNotifier{log: log} }

// Notify logs how the backup of ev ended; events that end nothing are
// ignored.
func (n *LogNotifier) Notify(ctx context.Context, ev events.Event) error {
	o, ok := OutcomeOf(ev)
	if !ok {
		return nil
	}
	attrs := []slog.Attr{
		slog.String("backup_id", o.BackupID),
		slog.String("workload", o.Workload.String()),
		slog.String("outcome", o.Result()),
		slog.String("reason", o.Reason),
	}
	if o.Step != "" {
		attrs = append(attrs, slog.String("step", o.Step))
	}
	if o.Frozen {
		// A string such as "1.5s", as in the events, rather than nanoseconds.
		attrs = append(attrs, slog.String("frozen_for", o.FrozenFor.String()))
	}
	if o.ForcedUnlock {
		attrs = append(attrs, slog.Bool("forced_unlock", true))
	}
	level, msg := slog.LevelInfo, "backup succeeded"
	if !o.Succeeded {
		level, msg = slog.LevelWarn, "backup failed"
	}
	if r := o.Restore; r != nil {
		attrs = append(attrs, slog.String("restore_id", r.RestoreID), slog.String("target_namespace", r.TargetNamespace), slog.Int("claims", len(r.Claims)))
		msg = "restore succeeded"
		if !o.Succeeded {
			msg = "restore failed"
		}
	}
	if o.ForcedUnlock {
		level = slog.LevelWarn
	}
	n.log.LogAttrs(ctx, level, msg, attrs...)
	return nil
}
