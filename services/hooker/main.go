// Command hooker freezes and resumes applications with blueprint hooks.
package main

import (
	"context"
	"log/slog"

	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/services/hooker/freeze"
)

func main() {
	var cfg freeze.Config
	service.Main("hooker", "HOOKER", &cfg, func(ctx context.Context, log *slog.Logger) error {
		return freeze.Run(ctx, cfg, log)
	})
}
