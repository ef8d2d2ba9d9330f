package harness

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

const natsServerModule = "github.com/nats-io/nats-server/v2"

// NATSServerVersion is the nats-server version pkg/events is built against
// (its go.mod), so the standalone server is the one the services were tested
// with embedded.
func NATSServerVersion() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	f, err := os.Open(filepath.Join(root, "pkg", "events", "go.mod"))
	if err != nil {
		return "", fmt.Errorf("read nats-server version: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i := 0; i+1 < len(fields); i++ {
			if fields[i] == natsServerModule {
				return fields[i+1], nil
			}
		}
	}
	return "", fmt.Errorf("read nats-server version: %s not in pkg/events/go.mod", natsServerModule)
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

// EnsureNATSServer builds nats-server at version from the Go module proxy once
// (go install into <cache>/nats-server/<version>/) and returns its path.
func EnsureNATSServer(ctx context.Context, version string, progress io.Writer) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "nats-server", version)
	bin := filepath.Join(dir, "nats-server")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Fprintf(progress, "[harness] building nats-server %s into %s\n", version, dir)
	tmp := dir + ".tmp"
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", fmt.Errorf("build nats-server: %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", "install", natsServerModule+"@"+version)
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off", "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build nats-server %s: %w: %s", version, err, strings.TrimSpace(string(out)))
	}
	_ = os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("build nats-server: %w", err)
	}
	return bin, nil
}
