package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"go.opentelemetry.io/otel"
	"golang.org/x/sync/errgroup"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/embedded"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/services/hooker/freeze"
	"github.com/freezeframe/freezeframe/services/notifier/notify"
	"github.com/freezeframe/freezeframe/services/scheduler/schedule"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot"
)

// upConfigs are the four services' configurations, each read from the
// environment under its own prefix, exactly as the separate binaries do.
type upConfigs struct {
	scheduler   schedule.Config
	hooker      freeze.Config
	snapshotter snapshot.Config
	notifier    notify.Config
}

func (u *upConfigs) each(f func(name, prefix string, cfg any, common *service.Common) error) error {
	return errors.Join(
		f("scheduler", "SCHEDULER", &u.scheduler, &u.scheduler.Common),
		f("hooker", "HOOKER", &u.hooker, &u.hooker.Common),
		f("snapshotter", "SNAPSHOTTER", &u.snapshotter, &u.snapshotter.Common),
		f("notifier", "NOTIFIER", &u.notifier, &u.notifier.Common),
	)
}

func defaultStateDir() string {
	if d := os.Getenv("FREEZEFRAME_STATE_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "freezeframe")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "freezeframe")
	}
	return ".freezeframe"
}

func cmdUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", defaultStateDir(), "where the embedded NATS keeps its data ($FREEZEFRAME_STATE_DIR)")
	httpAddr := fs.String("http-addr", envOr("FREEZEFRAME_HTTP_ADDR", ":8080"), "address serving /healthz, /readyz and /metrics for all four services ($FREEZEFRAME_HTTP_ADDR; empty: none). The default is skipped with a warning when the port is taken")
	natsPort := fs.Int("nats-port", envInt("FREEZEFRAME_NATS_PORT", 4222), "port of the embedded NATS on 127.0.0.1 ($FREEZEFRAME_NATS_PORT; -1: any free port)")
	var cfgs upConfigs
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: freezeframe up [flags]

Runs the scheduler, hooker, snapshotter and notifier in one process against
the current kubeconfig. With NATS_URL unset it starts an embedded NATS server
with JetStream on 127.0.0.1 (data under --state-dir) and sets it up as
"freezeframe setup" does; with NATS_URL set it connects there instead and
tries the set-up (the services wait for an admin's "freezeframe setup" if
its identity may not). Flags:
`)
		fs.PrintDefaults()
		fmt.Fprintln(stderr)
		_ = cfgs.each(func(name, prefix string, cfg any, _ *service.Common) error {
			fmt.Fprintf(stderr, "\n== %s ==\n", name)
			return service.Usage(prefix, cfg, stderr)
		})
	}
	if err := parseNoPositional(fs, args); err != nil {
		return err
	}
	if err := cfgs.each(func(name, prefix string, cfg any, _ *service.Common) error {
		_, err := service.Load(prefix, cfg, nil, stdout)
		return err
	}); err != nil {
		return err
	}
	log := service.NewLogger(stderr, cfgs.hooker.LogLevel)
	if addr := os.Getenv("FREEZEFRAME_PPROF_ADDR"); addr != "" {
		if err := servePprof(ctx, addr, log); err != nil {
			return err
		}
	}

	embeddedNATS := os.Getenv("NATS_URL") == ""
	if embeddedNATS {
		dir := filepath.Join(*stateDir, "nats")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
		srv, err := embedded.Start(embedded.Options{StoreDir: dir, Port: *natsPort, ServerName: "freezeframe-up"})
		if err != nil {
			return err
		}
		defer srv.Shutdown()
		log.Info("embedded NATS with JetStream started", "url", srv.ClientURL(), "store", dir)
		_ = cfgs.each(func(_, _ string, _ any, c *service.Common) error {
			c.NATS.URL = srv.ClientURL()
			return nil
		})
	}
	if err := upSetUpBus(ctx, cfgs, embeddedNATS, log); err != nil {
		return err
	}
	shutdownTracing, err := service.SetupTracing(ctx, "freezeframe")
	if err != nil {
		return err
	}
	defer func() { _ = shutdownTracing(context.WithoutCancel(ctx)) }()

	metrics, err := service.NewMetrics("freezeframe")
	if err != nil {
		return err
	}
	defer func() { _ = metrics.Shutdown(context.WithoutCancel(ctx)) }()
	otel.SetMeterProvider(metrics.Provider())
	health := service.NewHealth()
	_ = cfgs.each(func(name, _ string, _ any, c *service.Common) error {
		c.Runtime = service.Runtime{Meters: metrics.Provider(), Probe: health.Probe(name)}
		return nil
	})

	g, gctx := errgroup.WithContext(ctx)
	if *httpAddr != "" {
		_, fromEnv := os.LookupEnv("FREEZEFRAME_HTTP_ADDR")
		fromFlag := false
		fs.Visit(func(f *flag.Flag) { fromFlag = fromFlag || f.Name == "http-addr" })
		ep, err := service.Listen(*httpAddr, health, metrics.Handler(), log)
		switch {
		case err != nil && !fromEnv && !fromFlag:
			log.Warn("not serving /healthz, /readyz and /metrics: the default address is taken; set --http-addr or FREEZEFRAME_HTTP_ADDR", "addr", *httpAddr, "err", err)
		case err != nil:
			return err
		default:
			g.Go(func() error { return ep.Serve(gctx) })
		}
	}
	start := func(name string, run func(context.Context, *slog.Logger) error) {
		l := log.With("service", name)
		g.Go(func() error {
			if err := run(gctx, l); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	start("scheduler", func(ctx context.Context, l *slog.Logger) error { return schedule.Run(ctx, cfgs.scheduler, l) })
	start("hooker", func(ctx context.Context, l *slog.Logger) error { return freeze.Run(ctx, cfgs.hooker, l) })
	start("snapshotter", func(ctx context.Context, l *slog.Logger) error { return snapshot.Run(ctx, cfgs.snapshotter, l) })
	start("notifier", func(ctx context.Context, l *slog.Logger) error { return notify.Run(ctx, cfgs.notifier, l) })
	log.Info("freezeframe up", "cluster", cfgs.hooker.Cluster, "nats", cfgs.hooker.NATS.URL)
	return g.Wait()
}

// upSetUpBus creates what the services need on NATS before they start.
// `up` owns an embedded server, so it sets it up; on a NATS of its own
// (NATS_URL) it tries, and when its identity may not (no admin rights) the
// services wait for an admin's `freezeframe setup`.
func upSetUpBus(ctx context.Context, cfgs upConfigs, embeddedNATS bool, log *slog.Logger) error {
	nc, js, err := service.Connect(ctx, cfgs.hooker.NATS, "freezeframe-setup", log, nats.CustomInboxPrefix(events.InboxPrefix(events.RoleAdmin)))
	if err != nil {
		return err
	}
	defer nc.Close()
	report := func(line string) { log.Info("set up: " + line) }
	if embeddedNATS {
		return setUpBus(ctx, js, cfgs, log, report)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := setUpBus(sctx, js, cfgs, log, report); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("could not set up the bus; the services wait for `freezeframe setup` run with admin credentials", "err", err)
	}
	return nil
}

func envInt(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return v
	}
	return def
}
