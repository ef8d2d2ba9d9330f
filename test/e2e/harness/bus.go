package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// BusOptions configures a standalone nats-server set up as in production: one nkey user
// per role with the permissions `freezeframe nats-auth` writes, and the stream, consumers
// and buckets made by `freezeframe setup` with the admin identity.
type BusOptions struct {
	// Bin is the freezeframe binary (see Build): it writes the identities and runs setup.
	Bin string
	// Server is the nats-server binary (see EnsureNATSServer).
	Server string
	// Dir holds the seeds (Dir/auth/<role>.nk), the server's configuration, store and log.
	Dir string
	// Cluster is CLUSTER for setup; "e2e" when empty.
	Cluster string
	// Env adds KEY=VALUE settings for `freezeframe setup` (STREAM_MAX_AGE=...).
	Env []string
}

// Identities are one nkey seed per role and the server's auth.conf (public keys and
// permissions), as `freezeframe nats-auth` writes them into Dir.
type Identities struct{ Dir string }

// WriteIdentities runs `freezeframe nats-auth --out dir` with the freezeframe binary bin.
func WriteIdentities(ctx context.Context, bin, dir string) (Identities, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "nats-auth", "--out", dir)
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return Identities{}, fmt.Errorf("freezeframe nats-auth: %w\n%s", err, out)
	}
	return Identities{Dir: dir}, nil
}

// Seed is the path of role's nkey seed file.
func (i Identities) Seed(role events.Role) string {
	return filepath.Join(i.Dir, string(role)+".nk")
}

// AuthConf is the path of the server's authorization block, for `include`.
func (i Identities) AuthConf() string { return filepath.Join(i.Dir, "auth.conf") }

// Options are the connection options of role: its nkey, and its replies on the role's
// own inbox prefix (the only one its permissions let it subscribe to).
func (i Identities) Options(role events.Role) ([]nats.Option, error) {
	auth, err := nats.NkeyOptionFromSeed(i.Seed(role))
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", role, err)
	}
	return []nats.Option{auth, nats.CustomInboxPrefix(events.InboxPrefix(role))}, nil
}

// Bus is a running nats-server with per-role identities, the event stream and the
// services' consumers and buckets already set up. It outlives any `freezeframe up`
// started against it, as a production NATS outlives the services.
type Bus struct {
	Identities
	opts BusOptions
	port int
	proc *sandbox.Process
}

// StartBus writes the identities (`freezeframe nats-auth --out Dir/auth`), starts
// nats-server with their auth.conf on a free loopback port, waits for JetStream, and runs
// `freezeframe setup` as admin. Stop it when done.
func StartBus(ctx context.Context, opts BusOptions) (_ *Bus, err error) {
	if opts.Bin == "" || opts.Server == "" || opts.Dir == "" {
		return nil, errors.New("start bus: Bin, Server and Dir are required")
	}
	if opts.Cluster == "" {
		opts.Cluster = "e2e"
	}
	port, err := sandbox.FreePort()
	if err != nil {
		return nil, fmt.Errorf("start bus: %w", err)
	}
	b := &Bus{opts: opts, port: port}
	if b.Identities, err = WriteIdentities(ctx, opts.Bin, filepath.Join(opts.Dir, "auth")); err != nil {
		return nil, fmt.Errorf("start bus: %w", err)
	}
	conf := filepath.Join(opts.Dir, "nats-server.conf")
	// The seeds stay on this side: the server sees auth.conf, public keys and permissions.
	cfg := fmt.Sprintf("server_name: e2e\nlisten: \"127.0.0.1:%d\"\njetstream {\n  store_dir: %q\n}\ninclude \"auth/auth.conf\"\n",
		port, filepath.Join(opts.Dir, "store"))
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("start bus: %w", err)
	}
	b.proc, err = sandbox.Spawn("nats-server", opts.Dir, exec.Command(opts.Server, "-c", conf))
	if err != nil {
		return nil, fmt.Errorf("start bus: %w", err)
	}
	defer func() {
		if err != nil {
			b.Stop()
		}
	}()
	if err := b.waitJetStream(ctx); err != nil {
		return nil, fmt.Errorf("start bus: %w", err)
	}
	env := append([]string{"CLUSTER=" + opts.Cluster}, opts.Env...)
	if out, err := b.freezeframe(ctx, append(env, b.Env(events.RoleAdmin)...), "setup"); err != nil {
		return nil, fmt.Errorf("start bus: freezeframe setup: %w\n%s", err, out)
	}
	return b, nil
}

// freezeframe runs the CLI with a clean environment plus env, and returns its output.
func (b *Bus) freezeframe(ctx context.Context, env []string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.opts.Bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	return cmd.CombinedOutput()
}

// waitJetStream waits until the admin identity gets an answer from JetStream.
func (b *Bus) waitJetStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var last error
	for {
		if err := b.proc.Exited(); err != nil {
			return err
		}
		last = func() error {
			nc, err := b.Connect(events.RoleAdmin, nats.Timeout(time.Second), nats.NoReconnect())
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			_, err = js.AccountInfo(ctx)
			return err
		}()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nats-server not ready: %w (last: %v); log %s", ctx.Err(), last, b.Log())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// URL is the server's client URL.
func (b *Bus) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(b.port) }

// Env is what a freezeframe CLI needs to talk to the bus as role: NATS_URL, NATS_NKEY,
// and FREEZEFRAME_ROLE (which names the inbox its replies come to).
func (b *Bus) Env(role events.Role) []string {
	return []string{"NATS_URL=" + b.URL(), "NATS_NKEY=" + b.Seed(role), "FREEZEFRAME_ROLE=" + string(role)}
}

// ServiceEnv is what `freezeframe up` needs to run each service as its own identity:
// NATS_URL, and <SERVICE>_NATS_NKEY for the scheduler, hooker, snapshotter and notifier.
func (b *Bus) ServiceEnv() []string {
	env := []string{"NATS_URL=" + b.URL()}
	for _, r := range []events.Role{events.RoleScheduler, events.RoleHooker, events.RoleSnapshotter, events.RoleNotifier} {
		env = append(env, strings.ToUpper(string(r))+"_NATS_NKEY="+b.Seed(r))
	}
	return env
}

// Connect opens a connection as role (Identities.Options). Close it when done.
func (b *Bus) Connect(role events.Role, opts ...nats.Option) (*nats.Conn, error) {
	base, err := b.Options(role)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", b.URL(), err)
	}
	base = append(base, nats.Name("e2e-"+string(role)))
	nc, err := nats.Connect(b.URL(), append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s as %s: %w", b.URL(), role, err)
	}
	return nc, nil
}

// Log is the path of the server's log.
func (b *Bus) Log() string { return filepath.Join(b.opts.Dir, "nats-server.log") }

// LogTail returns the last n lines of the server's log.
func (b *Bus) LogTail(n int) string { return logTail(b.Log(), n) }

// Violations returns the lines of the server's log where it refused a client: a
// publish or subscription outside the identity's permissions, or a failed
// authentication. With every service on its own identity there should be none.
func (b *Bus) Violations() []string {
	data, err := os.ReadFile(b.Log())
	if err != nil {
		return []string{fmt.Sprintf("(no nats-server log: %v)", err)}
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		if strings.Contains(line, "Violation") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// Stop stops the server.
func (b *Bus) Stop() {
	if b.proc != nil {
		b.proc.Stop(10 * time.Second)
	}
}
