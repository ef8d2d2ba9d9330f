package notify

import (
	"context"
	"log/slog"

	"github.com/freezeframe/freezeframe/pkg/service"
)

// Config is the notifier's configuration, read from NOTIFIER_* variables.
type Config struct {
	service.Common
	// Concurrency bounds the notifications in flight: a slow destination
	// must not hold every backup's notification in memory.
	Concurrency int `envconfig:"CONCURRENCY" default:"16" desc:"terminal events notified at once"`
}

func (c Config) withDefaults() Config {
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	return c
}

// Run connects to the event stream and notifies through the log until ctx
// ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	bus, err := service.OpenBus(ctx, cfg.Common, "notifier", log)
	if err != nil {
		return err
	}
	defer bus.Close()
	return New(cfg, NewLogNotifier(log), log).Run(ctx, bus.JetStream)
}
