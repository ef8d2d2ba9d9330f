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

	"go.opentelemetry.io/otel"
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
	c := cfg.common()
	metrics, err := NewMetrics(name)
	if err != nil {
		log.Error("exit", "err", err)
		return 1
	}
	defer func() { _ = metrics.Shutdown(context.WithoutCancel(ctx)) }()
	otel.SetMeterProvider(metrics.Provider())
	health := NewHealth()
	c.Runtime = Runtime{Meters: metrics.Provider(), Probe: health.Probe(name)}
	var ep *Endpoint
	if c.HTTPAddr != "" {
		if ep, err = Listen(c.HTTPAddr, health, metrics.Handler(), log); err != nil {
			log.Error("exit", "err", err)
			return 1
		}
	}
	if err := Run(ctx, name, c.ShutdownTimeout, log, WithEndpoint(ep, run)); err != nil {
		log.Error("exit", "err", err)
		return 1
	}
	return 0
}

// WithEndpoint serves ep while run runs; nil ep: run alone.
func WithEndpoint(ep *Endpoint, run RunFunc) RunFunc {
	if ep == nil {
		return run
	}
	return func(ctx context.Context, log *slog.Logger) error {
		sctx, stop := context.WithCancel(ctx)
		served := make(chan struct{})
		go func() {
			defer close(served)
			if err := ep.Serve(sctx); err != nil {
				log.ErrorContext(ctx, "http endpoint stopped", "err", err)
			}
		}()
		err := run(ctx, log)
		stop()
		<-served
		return err
	}
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
