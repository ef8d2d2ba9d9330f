// Package natsserver builds the standalone nats-server binary the tests
// run as a real process (the chaos matrix, the permissions test), from the
// Go module proxy, once per version, into a cache shared by every test.
package natsserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Module is nats-server's Go module.
const Module = "github.com/nats-io/nats-server/v2"

// VersionIn reads the nats-server version a go.mod requires (pkg/events'
// go.mod: the server the services are tested with embedded).
func VersionIn(goMod string) (string, error) {
	f, err := os.Open(goMod)
	if err != nil {
		return "", fmt.Errorf("read nats-server version: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i := 0; i+1 < len(fields); i++ {
			if fields[i] == Module {
				return fields[i+1], nil
			}
		}
	}
	return "", fmt.Errorf("read nats-server version: %s not in %s", Module, goMod)
}

// CacheDir is where built tools are kept: $FREEZEFRAME_CACHE, else
// ~/.cache/freezeframe (as the sandbox's build.sh).
func CacheDir() (string, error) {
	if d := os.Getenv("FREEZEFRAME_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locate cache: %w", err)
	}
	return filepath.Join(d, "freezeframe"), nil
}

// Ensure builds nats-server at version from the Go module proxy once (go
// install into <cache>/nats-server/<version>/) and returns its path.
func Ensure(ctx context.Context, version string, progress io.Writer) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "nats-server", version)
	bin := filepath.Join(dir, "nats-server")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Fprintf(progress, "building nats-server %s into %s\n", version, dir)
	tmp, err := os.MkdirTemp(filepath.Dir(dir), version+".tmp-")
	if err != nil {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return "", fmt.Errorf("build nats-server: %w", err)
		}
		if tmp, err = os.MkdirTemp(filepath.Dir(dir), version+".tmp-"); err != nil {
			return "", fmt.Errorf("build nats-server: %w", err)
		}
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "go", "install", Module+"@"+version)
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off", "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build nats-server %s: %w: %s", version, err, strings.TrimSpace(string(out)))
	}
	// Another test may have built it meanwhile: either copy will do.
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(bin); serr == nil {
			return bin, nil
		}
		return "", fmt.Errorf("build nats-server: %w", err)
	}
	return bin, nil
}
