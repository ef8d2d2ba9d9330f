// Command scheduler turns ad-hoc backup requests into BackupRequested events.
// Configuration comes from SCHEDULER_* variables; see --help.
package main

import (
	_ "time/tzdata" // policies name time zones; the image may have no zoneinfo

	"context"
	"log/slog"

	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/services/scheduler/schedule"
)

func main() {
	var cfg schedule.Config
	service.Main("scheduler", "SCHEDULER", &cfg, func(ctx context.Context, log *slog.Logger) error {
		return schedule.Run(ctx, cfg, log)
	})
}
