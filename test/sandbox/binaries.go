package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Binary names in the directory that build.sh fills.
const (
	binEtcd               = "etcd"
	binAPIServer          = "kube-apiserver"
	binControllerManager  = "kube-controller-manager"
	binScheduler          = "kube-scheduler"
	binKwok               = "kwok"
	binSnapshotController = "snapshot-controller"
	binCSISnapshotter     = "csi-snapshotter"
	binCSIProvisioner     = "csi-provisioner"
	// BinCSISanity is the CSI conformance suite's binary name.
	BinCSISanity = "csi-sanity"
)

var allBinaries = []string{
	binEtcd, binAPIServer, binControllerManager, binScheduler, binKwok,
	binSnapshotController, binCSISnapshotter, binCSIProvisioner, BinCSISanity,
}

// ModuleDir returns the directory of this module's source (where build.sh and tools/ live).
// It is found from the compiled-in source path, so it works for `go test` and `go run` in a
// checkout, not for a binary built with -trimpath and moved elsewhere.
func ModuleDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locate sandbox module: no caller information")
	}
	dir := filepath.Dir(file)
	if _, err := os.Stat(filepath.Join(dir, "build.sh")); err != nil {
		return "", fmt.Errorf("locate sandbox module: %w", err)
	}
	return dir, nil
}

// EnsureBinaries runs build.sh, which builds whatever is missing from the version-keyed
// cache (about 15 minutes cold on 2 cores; under a second when all is cached) and installs
// missing Debian packages. Progress goes to progress (nil discards it). It returns the
// directory holding the binaries.
func EnsureBinaries(ctx context.Context, progress io.Writer) (string, error) {
	dir, err := ModuleDir()
	if err != nil {
		return "", err
	}
	if progress == nil {
		progress = io.Discard
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "build.sh"))
	cmd.Dir = dir
	cmd.Stdout = &out
	cmd.Stderr = progress
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build sandbox binaries: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	bin := lines[len(lines)-1]
	if err := checkBinaries(bin); err != nil {
		return "", err
	}
	return bin, nil
}

func checkBinaries(bin string) error {
	for _, name := range allBinaries {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return fmt.Errorf("sandbox binary %s: %w", name, err)
		}
	}
	return nil
}
