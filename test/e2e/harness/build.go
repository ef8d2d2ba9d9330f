package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// RepoRoot returns the root of the freezeframe checkout, found from this source file's
// compiled-in path (so it works for `go test` and `go run`, not for a binary moved away).
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locate repository: no caller information")
	}
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "cmd", "freezeframe", "go.mod")); err != nil {
		return "", fmt.Errorf("locate repository: %w", err)
	}
	return root, nil
}

// Build builds cmd/freezeframe into outDir (as the Makefile does: GOWORK=off) and returns
// the binary's path. A cold build takes minutes on two cores: while it runs, progress
// gets a line every 15 seconds.
func Build(ctx context.Context, outDir string, progress io.Writer) (string, error) {
	if progress == nil {
		progress = io.Discard
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(outDir, "freezeframe")
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(root, "cmd", "freezeframe")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(progress, "[build] still building freezeframe (%s; a cold build takes a few minutes)\n", time.Since(start).Round(time.Second))
			}
		}
	}()
	err = cmd.Run()
	close(done)
	if err != nil {
		return "", fmt.Errorf("build freezeframe: %w: %s", err, strings.TrimSpace(out.String()))
	}
	fmt.Fprintf(progress, "[build] freezeframe built in %s\n", time.Since(start).Round(100*time.Millisecond))
	return bin, nil
}

// goTool is the go command that runs this code, so that the binary is built with the
// same toolchain.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}
