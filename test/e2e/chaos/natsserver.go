package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
	"github.com/freezeframe/freezeframe/test/sandbox/natsserver"
)

// NATSServerVersion is the nats-server version pkg/events is built against
// (its go.mod), so the standalone server is the one the services were tested
// with embedded.
func NATSServerVersion() (string, error) {
	root, err := harness.RepoRoot()
	if err != nil {
		return "", err
	}
	return natsserver.VersionIn(filepath.Join(root, "pkg", "events", "go.mod"))
}

// EnsureNATSServer builds nats-server at version from the Go module proxy
// once and returns its path (see natsserver.Ensure).
func EnsureNATSServer(ctx context.Context, version string, progress io.Writer) (string, error) {
	return natsserver.Ensure(ctx, version, progress)
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
