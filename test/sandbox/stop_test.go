package sandbox_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/test/sandbox"
)

// processesUnder returns the pids whose command line mentions dir.
func processesUnder(t *testing.T, dir string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), dir) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

func running(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return syscall.Kill(pid, 0) == nil && (i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z')
}

// Stop must leave nothing behind: components, database servers, and commands that kwok
// started for `kubectl exec` and that are still running (a session-held hook).
func TestStopLeavesNoProcess(t *testing.T) {
	ctx := t.Context()
	c, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = c.Stop()
		}
	})
	db, err := c.StartMariaDB(ctx, sandbox.DatabaseOptions{Namespace: "stop", Name: "db"})
	if err != nil {
		t.Fatal(err)
	}
	execCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = c.Kubectl(execCtx, "exec", "-n", "stop", db.Pod, "-c", db.Container, "--",
			"sh", "-c", "echo $$ > held.pid; exec sleep 600")
	}()
	pidFile := filepath.Join(db.Volume.Path, "held.pid")
	var held int
	poll(t, 30*time.Second, "exec session started", func(context.Context) (bool, error) {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false, err
		}
		held, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil, err
	})
	before := processesUnder(t, c.StateDir)
	// etcd, apiserver, controller-manager, scheduler, kwok, snapshot-controller,
	// csi-snapshotter, mariadbd.
	if len(before) < 8 {
		t.Fatalf("%d processes mention %s before Stop, want at least 8", len(before), c.StateDir)
	}
	cancel()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	for _, pid := range append(before, held) {
		if running(pid) {
			cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			t.Errorf("pid %d still running after Stop: %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	if _, err := os.Stat(c.StateDir); !os.IsNotExist(err) {
		t.Errorf("state dir %s still there: %v", c.StateDir, err)
	}
}
