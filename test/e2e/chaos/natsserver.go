package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

const natsServerModule = "github.com/nats-io/nats-server/v2"

// NATSServerVersion is the nats-server version pkg/events is built against
// (its go.mod), so the standalone server is the one the services were tested
// with embedded.
func NATSServerVersion() (string, error) {
	root, err := harness.RepoRoot()
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
	fmt.Fprintf(progress, "[chaos] building nats-server %s into %s\n", version, dir)
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

// NATSServer is a standalone nats-server with JetStream on a loopback port,
// its store in a directory that survives a restart.
type NATSServer struct {
	*Proc
	Port int
}

// StartNATSServer starts bin with JetStream, its store under dir, on a free
// port, and waits until JetStream answers.
func StartNATSServer(ctx context.Context, bin, dir, name string) (*NATSServer, error) {
	port, err := sandbox.FreePort()
	if err != nil {
		return nil, fmt.Errorf("start nats-server: %w", err)
	}
	store := filepath.Join(dir, "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		return nil, fmt.Errorf("start nats-server: %w", err)
	}
	s := &NATSServer{Port: port, Proc: &Proc{
		Name: name, Bin: bin, Log: filepath.Join(dir, name+".log"),
		Args: []string{"--jetstream", "--store_dir", store, "--addr", "127.0.0.1", "--port", strconv.Itoa(port), "--server_name", name},
		Env:  os.Environ(),
	}}
	if err := s.Start(); err != nil {
		return nil, err
	}
	if err := s.WaitReady(ctx); err != nil {
		_ = s.Kill(ctx)
		return nil, err
	}
	return s, nil
}

// URL is the client URL.
func (s *NATSServer) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(s.Port) }

// WaitReady waits until JetStream answers on the server.
func (s *NATSServer) WaitReady(ctx context.Context) error {
	return poll(ctx, 20*time.Second, 100*time.Millisecond, "nats-server "+s.Name+" ready", func() (bool, error) {
		select {
		case <-s.Exited():
			return false, errors.New("nats-server exited: see " + s.Log)
		default:
		}
		nc, err := nats.Connect(s.URL(), nats.Timeout(time.Second), nats.NoReconnect())
		if err != nil {
			return false, nil
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return false, nil
		}
		actx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err = js.AccountInfo(actx)
		return err == nil, nil
	})
}

// poll calls cond every interval until it holds, returns an error, or timeout
// passes.
func poll(ctx context.Context, timeout, interval time.Duration, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-time.After(interval):
		}
	}
}
