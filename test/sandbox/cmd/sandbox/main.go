// Command sandbox brings the local Kubernetes sandbox up and down for a person (and for
// make demo):
//
//	sandbox up     build if needed, start in the background, print `export KUBECONFIG=...`
//	sandbox up -foreground   the same, but stay attached until Ctrl-C
//	sandbox down   stop the sandbox started from the same state directory
//
// The state directory (default $FREEZEFRAME_CACHE/sandbox/state, or
// ~/.cache/freezeframe/sandbox/state) holds the kubeconfig, logs, data and the pid file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/freezeframe/freezeframe/test/sandbox"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sandbox:", err)
		os.Exit(1)
	}
}

func defaultState() string {
	cache := os.Getenv("FREEZEFRAME_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		cache = filepath.Join(home, ".cache", "freezeframe")
	}
	return filepath.Join(cache, "sandbox", "state")
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: sandbox up|down [flags] (sandbox <cmd> -h for flags)")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	state := fs.String("state", defaultState(), "state directory (kubeconfig, logs, data, pid file)")
	switch args[0] {
	case "up":
		foreground := fs.Bool("foreground", false, "stay attached; stop on Ctrl-C")
		binDir := fs.String("bin-dir", "", "directory with the built binaries (default: run build.sh)")
		readyDelay := fs.Duration("snapshot-ready-delay", 0, "keep new snapshots not ready for this long")
		groupReadyDelay := fs.Duration("group-snapshot-ready-delay", 0, "keep new group snapshots not ready for this long (default: as -snapshot-ready-delay)")
		child := fs.Bool("daemon-child", false, "internal: the detached process")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return up(*state, *binDir, readyDelays{snapshot: *readyDelay, group: *groupReadyDelay}, *foreground, *child)
	case "down":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return down(*state)
	default:
		return fmt.Errorf("unknown command %q: want up or down", args[0])
	}
}

func pidFile(state string) string   { return filepath.Join(state, "sandbox.pid") }
func readyFile(state string) string { return filepath.Join(state, "ready") }

// running returns the pid of a live sandbox for state, or 0.
func running(state string) int {
	b, err := os.ReadFile(pidFile(state))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !alive(pid) {
		return 0
	}
	return pid
}

// alive reports whether pid runs. A zombie does not count: in a container nothing may
// reap the detached sandbox once it exits.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// readyDelays are how long new snapshots and group snapshots stay not ready.
type readyDelays struct{ snapshot, group time.Duration }

func up(state, binDir string, delays readyDelays, foreground, child bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	state, err := filepath.Abs(state)
	if err != nil {
		return err
	}
	if !child {
		if pid := running(state); pid != 0 {
			fmt.Printf("# sandbox already running (pid %d)\nexport KUBECONFIG=%s\n", pid, filepath.Join(state, "kubeconfig"))
			return nil
		}
		if binDir == "" {
			if binDir, err = sandbox.EnsureBinaries(ctx, os.Stderr); err != nil {
				return err
			}
		}
		// Each up is a fresh cluster.
		if err := os.RemoveAll(state); err != nil {
			return err
		}
		if err := os.MkdirAll(state, 0o755); err != nil {
			return err
		}
		if !foreground {
			return detach(ctx, state, binDir, delays)
		}
	}
	if err := os.WriteFile(pidFile(state), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(pidFile(state))
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	c, err := sandbox.Start(startCtx, sandbox.Options{
		BinDir:                  binDir,
		StateDir:                state,
		Progress:                os.Stderr,
		Logger:                  slog.New(slog.NewTextHandler(os.Stderr, nil)),
		SnapshotReadyDelay:      delays.snapshot,
		GroupSnapshotReadyDelay: delays.group,
	})
	cancel()
	if err != nil {
		return err
	}
	defer c.Stop()
	if err := os.WriteFile(readyFile(state), []byte(c.Kubeconfig+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(readyFile(state))
	if foreground {
		fmt.Printf("export KUBECONFIG=%s\n# Ctrl-C stops the sandbox\n", c.Kubeconfig)
	}
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "[sandbox] stopping")
	return c.Stop()
}

// detach starts `sandbox up` again as a session leader writing to state/sandbox.log, and
// returns once it reports ready (or fails).
func detach(ctx context.Context, state, binDir string, delays readyDelays) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(state, "sandbox.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	proc, err := os.StartProcess(exe, []string{exe, "up", "-daemon-child", "-state", state, "-bin-dir", binDir,
		"-snapshot-ready-delay", delays.snapshot.String(), "-group-snapshot-ready-delay", delays.group.String()}, &os.ProcAttr{
		Files: []*os.File{devnull, logf, logf},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _, _ = proc.Wait(); close(exited) }()
	fmt.Fprintf(os.Stderr, "[sandbox] starting in the background (pid %d, log %s)\n", proc.Pid, logPath)
	deadline := time.After(5 * time.Minute)
	for {
		if _, err := os.Stat(readyFile(state)); err == nil {
			fmt.Printf("export KUBECONFIG=%s\n", filepath.Join(state, "kubeconfig"))
			fmt.Fprintf(os.Stderr, "[sandbox] up; stop it with: sandbox down -state %s\n", state)
			return nil
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("sandbox exited during startup:\n%s", b)
		case <-ctx.Done():
			_ = proc.Signal(syscall.SIGTERM)
			return ctx.Err()
		case <-deadline:
			_ = proc.Signal(syscall.SIGTERM)
			return fmt.Errorf("sandbox not ready within 5m; see %s", logPath)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func down(state string) error {
	state, err := filepath.Abs(state)
	if err != nil {
		return err
	}
	pid := running(state)
	if pid == 0 {
		fmt.Fprintln(os.Stderr, "[sandbox] not running")
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop sandbox (pid %d): %w", pid, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return fmt.Errorf("sandbox (pid %d) did not stop within 60s; killed", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "[sandbox] stopped (pid %d)\n", pid)
	return nil
}
