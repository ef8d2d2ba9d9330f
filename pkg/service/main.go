package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Configurable is a service configuration that embeds Common.
type Configurable interface{ common() *Common }

func (c *Common) common() *Common { return c }

// RunFunc is a service's body: it builds its dependencies from cfg, blocks
// until ctx ends, and returns after a graceful shutdown.
type RunFunc func(ctx context.Context, log *slog.Logger) error

// Main is the whole of a service's main(): load cfg from the environment
// under prefix (or print --help), log JSON to stderr, trace, and run until
// SIGINT or SIGTERM. A second signal exits at once. It never returns.
func Main(name, prefix string, cfg Configurable, run RunFunc) {
	os.Exit(mainExit(name, prefix, cfg, run, os.Args[1:], os.Stdout, os.Stderr))
}

func mainExit(name, prefix string, cfg Configurable, run RunFunc, args []string, stdout, stderr io.Writer) int {
	help, err := Load(prefix, cfg, args, stdout)
	if help {
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	log := NewLogger(stderr, cfg.common().LogLevel).With("service", name)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal now kills the process the default way
	}()
	if err := Run(ctx, name, cfg.common().ShutdownTimeout, log, run); err != nil {
		log.Error("exit", "err", err)
		return 1
	}
	return 0
}

// Run sets up tracing, runs the body, and flushes telemetry within
// shutdownTimeout once the body returned.
func Run(ctx context.Context, name string, shutdownTimeout time.Duration, log *slog.Logger, run RunFunc) (err error) {
	shutdownTracing, err := SetupTracing(ctx, name)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		if serr := shutdownTracing(sctx); serr != nil {
			err = errors.Join(err, fmt.Errorf("flush traces: %w", serr))
		}
	}()
	log.Info("starting")
	err = run(ctx, log)
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped")
	return nil
}
