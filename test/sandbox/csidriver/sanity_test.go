package csidriver_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/test/sandbox"
	"github.com/freezeframe/freezeframe/test/sandbox/csidriver"
)

// TestCSISanity runs the upstream CSI conformance suite (csi-sanity) against the driver.
func TestCSISanity(t *testing.T) {
	bin, err := sandbox.EnsureBinaries(t.Context(), testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	drv, err := csidriver.New(csidriver.Options{Root: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	sock := filepath.Join(dir, "csi.sock")
	served := make(chan error, 1)
	go func() { served <- drv.Serve(ctx, sock) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	cmdCtx, stop := context.WithTimeout(t.Context(), 5*time.Minute)
	defer stop()
	cmd := exec.CommandContext(cmdCtx, filepath.Join(bin, sandbox.BinCSISanity),
		"-csi.endpoint", "unix://"+sock,
		"-csi.mountdir", filepath.Join(dir, "mount"),
		"-csi.stagingdir", filepath.Join(dir, "staging"),
		"-csi.testvolumesize", "1048576",
		"-ginkgo.no-color",
	)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if testing.Verbose() {
		cmd.Args = append(cmd.Args, "-ginkgo.v")
	}
	if err := cmd.Run(); err != nil {
		t.Fatalf("csi-sanity: %v", err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}
