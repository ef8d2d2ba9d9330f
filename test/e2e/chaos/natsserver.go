package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// NATSServer is a standalone nats-server with JetStream on a loopback port,
// its store in a directory that survives a restart.
type NATSServer struct {
	*Proc
	Port int
	// ids are the users the server lets in; the readiness check is admin.
	ids harness.Identities
}

// StartNATSServer starts bin with JetStream, its store under dir, on a free
// port, its users those of ids (one per role, `freezeframe nats-auth`), and
// waits until JetStream answers.
func StartNATSServer(ctx context.Context, bin, dir, name string, ids harness.Identities) (*NATSServer, error) {
	port, err := sandbox.FreePort()
	if err != nil {
		return nil, fmt.Errorf("start nats-server: %w", err)
	}
	store := filepath.Join(dir, "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		return nil, fmt.Errorf("start nats-server: %w", err)
	}
	conf, err := writeAuthConfig(dir, ids)
	if err != nil {
		return nil, fmt.Errorf("start nats-server: %w", err)
	}
	s := &NATSServer{Port: port, ids: ids, Proc: &Proc{
		Name: name, Bin: bin, Log: filepath.Join(dir, name+".log"),
		Args: []string{"--config", conf, "--jetstream", "--store_dir", store, "--addr", "127.0.0.1", "--port", strconv.Itoa(port), "--server_name", name},
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
		opts, err := s.ids.Options(events.RoleAdmin)
		if err != nil {
			return false, err
		}
		nc, err := nats.Connect(s.URL(), append(opts, nats.Timeout(time.Second), nats.NoReconnect())...)
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

// writeAuthConfig writes dir/nats.conf, which includes a copy of ids'
// auth.conf beside it (a nats-server include is relative to the file), and
// returns its path; the command line gives everything else.
func writeAuthConfig(dir string, ids harness.Identities) (string, error) {
	auth, err := os.ReadFile(ids.AuthConf())
	if err != nil {
		return "", fmt.Errorf("server configuration: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), auth, 0o600); err != nil {
		return "", fmt.Errorf("server configuration: %w", err)
	}
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte("include \"auth.conf\"\n"), 0o600); err != nil {
		return "", fmt.Errorf("server configuration: %w", err)
	}
	return conf, nil
}

// Violations returns the lines of the server's log where it refused a client
// (a publish or subscription outside its permissions, a failed login).
func (s *NATSServer) Violations() []string {
	data, err := os.ReadFile(s.Log)
	if err != nil {
		return []string{fmt.Sprintf("(no log of %s: %v)", s.Name, err)}
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		if strings.Contains(line, "Violation") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}
