// Command notifier tells people how each backup ended. Configuration comes
// from NOTIFIER_* variables; see --help.
package main

import (
	"context"
	"log/slog"

	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/services/notifier/notify"
)

func main() {
	var cfg notify.Config
	service.Main("notifier", "NOTIFIER", &cfg, func(ctx context.Context, log *slog.Logger) error {
		return notify.Run(ctx, cfg, log)
	})
}
