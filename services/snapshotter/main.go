// Command snapshotter cuts a CSI VolumeSnapshot of every volume of a frozen
// workload and reports when the cut is done, so the application can be
// resumed. See package snapshot.
package main

import (
	"context"
	"log/slog"

	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot"
)

func main() {
	var cfg snapshot.Config
	service.Main("snapshotter", "SNAPSHOTTER", &cfg, func(ctx context.Context, log *slog.Logger) error {
		return snapshot.Run(ctx, cfg, log)
	})
}
