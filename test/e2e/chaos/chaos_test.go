package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/services/notifier/slack/slacktest"
	"github.com/freezeframe/freezeframe/test/e2e/chaos"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// One sandbox for the package; the rows run one after another on it.
func TestMain(m *testing.M) { sandbox.Main(m, sandbox.Options{}) }

// TestChaosFast kills each service once, where it hurts most, and restarts it:
// the subset `make test` runs.
func TestChaosFast(t *testing.T) {
	runMatrix(t, chaos.FastMatrix())
}

func runMatrix(t *testing.T, rows []chaos.Row) {
	c := sandbox.Shared(t)
	ctx := t.Context()
	version, err := harness.NATSServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	natsBin, err := harness.EnsureNATSServer(ctx, version, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	binDir := serviceBinaries(t)
	work := t.TempDir()
	if d := os.Getenv("FREEZEFRAME_CHAOS_WORKDIR"); d != "" {
		work = d
	}
	slack := slacktest.NewServer(t, "xoxb-chaos")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	results, err := chaos.Run(ctx, chaos.Config{
		Cluster:    c,
		BinDir:     binDir,
		NATSServer: natsBin,
		WorkDir:    work,
		Slack:      slack,
		Log:        log,
	}, rows, func(r chaos.Result) {
		if !r.OK() {
			t.Logf("row %s: backup %s, logs in %s", r.Row, r.BackupID, r.Dir)
		}
	})
	var table strings.Builder
	if werr := chaos.WriteTable(&table, results); werr != nil {
		t.Fatal(werr)
	}
	fmt.Fprintf(os.Stdout, "\n%s\n", table.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(rows) {
		t.Fatalf("%d of %d rows ran", len(results), len(rows))
	}
	for _, r := range results {
		if !r.OK() {
			t.Errorf("%s: err %v, violations %v", r.Row, r.Err, r.Violations)
		}
	}
}

// serviceBinaries returns the directory holding the four service binaries and
// the freezeframe CLI (which sets up the bus): FREEZEFRAME_CHAOS_BIN (e.g. bin/
// after make build), else they are built from
// this checkout (GOWORK=off, as make build does) into a temporary directory.
func serviceBinaries(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("FREEZEFRAME_CHAOS_BIN"); d != "" {
		return d
	}
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	// Built together: mostly linking, which the cores share. The CLI sets up the bus.
	var wg sync.WaitGroup
	pkgs := []string{filepath.Join("cmd", "freezeframe")}
	for _, s := range chaos.ServiceNames {
		pkgs = append(pkgs, filepath.Join("services", s))
	}
	errs := make([]error, len(pkgs))
	for i, pkg := range pkgs {
		wg.Go(func() {
			cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, filepath.Base(pkg)), ".")
			cmd.Dir = filepath.Join(root, pkg)
			cmd.Env = append(os.Environ(), "GOWORK=off")
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("build %s: %w\n%s", pkg, err, out)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return dir
}
