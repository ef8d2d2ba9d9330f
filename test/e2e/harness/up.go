package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// UpOptions configures a `freezeframe up` process.
type UpOptions struct {
	// Bin is the freezeframe binary (see Build).
	Bin string
	// Kubeconfig is the cluster the services act on.
	Kubeconfig string
	// StateDir holds the embedded NATS's data (FREEZEFRAME_STATE_DIR); it survives a
	// restart, so the stream and the freeze leases do.
	StateDir string
	// LogPath receives the process's stdout and stderr, appended across restarts.
	LogPath string
	// Cluster is CLUSTER for the services; "e2e" when empty.
	Cluster string
	// Bus is the NATS the services connect to, each as its own identity. Nil: `up`
	// starts an embedded NATS (no credentials) on NATSPort.
	Bus *Bus
	// NATSPort is FREEZEFRAME_NATS_PORT, without a Bus; a free port when 0. It stays the
	// same across restarts.
	NATSPort int
	// Env adds KEY=VALUE settings (HOOKER_MAX_FREEZE=3s, SNAPSHOTTER_KUBECONFIG=...).
	Env []string
}

// Up is a running (or killed) `freezeframe up` process.
type Up struct {
	opts UpOptions

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	starts  int
}

// StartUp starts `freezeframe up` and returns once its scheduler answers requests.
func StartUp(ctx context.Context, opts UpOptions) (*Up, error) {
	if opts.Bin == "" || opts.Kubeconfig == "" || opts.StateDir == "" || opts.LogPath == "" {
		return nil, errors.New("start freezeframe up: Bin, Kubeconfig, StateDir and LogPath are required")
	}
	if opts.Cluster == "" {
		opts.Cluster = "e2e"
	}
	if opts.Bus == nil && opts.NATSPort == 0 {
		p, err := sandbox.FreePort()
		if err != nil {
			return nil, fmt.Errorf("start freezeframe up: %w", err)
		}
		opts.NATSPort = p
	}
	u := &Up{opts: opts}
	if err := u.start(ctx); err != nil {
		return nil, err
	}
	return u, nil
}

// NATSURL is the URL of the NATS the services use: the Bus's, or the embedded one's.
func (u *Up) NATSURL() string {
	if u.opts.Bus != nil {
		return u.opts.Bus.URL()
	}
	return "nats://127.0.0.1:" + strconv.Itoa(u.opts.NATSPort)
}

// userRole is the identity the tests' own connections and CLI invocations use, as a
// person running backups, unlocks and restores would: the operator.
const userRole = events.RoleOperator

// Cluster is the cluster name the services run with.
func (u *Up) Cluster() string { return u.opts.Cluster }

// LogPath is the file holding the process's output.
func (u *Up) LogPath() string { return u.opts.LogPath }

// Env is what a freezeframe CLI needs to talk to this process: NATS_URL, CLUSTER, and
// with a Bus the operator's NATS_NKEY.
func (u *Up) Env() []string {
	if u.opts.Bus != nil {
		return append(u.opts.Bus.Env(userRole), "CLUSTER="+u.opts.Cluster)
	}
	return []string{"NATS_URL=" + u.NATSURL(), "CLUSTER=" + u.opts.Cluster}
}

// Pid is the process id of the current (or last) process.
func (u *Up) Pid() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cmd == nil || u.cmd.Process == nil {
		return 0
	}
	return u.cmd.Process.Pid
}

func (u *Up) start(ctx context.Context) error {
	u.mu.Lock()
	if u.exited != nil {
		select {
		case <-u.exited:
		default:
			u.mu.Unlock()
			return errors.New("start freezeframe up: still running")
		}
	}
	u.starts++
	n := u.starts
	u.mu.Unlock()

	logf, err := os.OpenFile(u.opts.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start freezeframe up: %w", err)
	}
	fmt.Fprintf(logf, "==== freezeframe up (start %d) at %s\n", n, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(u.opts.Bin, "up")
	cmd.Env = append(cleanEnv(),
		"KUBECONFIG="+u.opts.Kubeconfig,
		"FREEZEFRAME_STATE_DIR="+u.opts.StateDir,
		"CLUSTER="+u.opts.Cluster,
		// A test stops it; nothing in flight is worth waiting long for.
		"SHUTDOWN_TIMEOUT=5s",
		// The suite keeps each application's blueprint in its namespace, as a team
		// owning its namespace would; the default (off) is tested in the hooker.
		"HOOKER_NAMESPACED_BLUEPRINTS=true",
	)
	if u.opts.Bus != nil {
		cmd.Env = append(cmd.Env, u.opts.Bus.ServiceEnv()...)
	} else {
		cmd.Env = append(cmd.Env, "FREEZEFRAME_NATS_PORT="+strconv.Itoa(u.opts.NATSPort))
	}
	cmd.Env = append(cmd.Env, u.opts.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, and killed with the test binary if that dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start freezeframe up: %w", err)
	}
	exited := make(chan struct{})
	u.mu.Lock()
	u.cmd, u.exited, u.waitErr = cmd, exited, nil
	u.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		u.mu.Lock()
		u.waitErr = err
		u.mu.Unlock()
		close(exited)
	}()
	if err := u.waitReady(ctx, exited); err != nil {
		_ = u.Kill()
		return fmt.Errorf("start freezeframe up: %w\n%s", err, u.LogTail(40))
	}
	return nil
}

// waitReady waits until the scheduler answers on its API subject.
func (u *Up) waitReady(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	for {
		select {
		case <-exited:
			return fmt.Errorf("exited before it was ready: %v", u.exitErr())
		default:
		}
		nc, err := u.dial(userRole, nats.Timeout(time.Second), nats.NoReconnect())
		if err == nil {
			_, err = nc.Request(events.APISubject(u.opts.Cluster), []byte("{}"), time.Second)
			nc.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last: %v)", ctx.Err(), last)
		case <-exited:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (u *Up) exitErr() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.waitErr
}

// Running reports whether the process has not exited.
func (u *Up) Running() bool {
	u.mu.Lock()
	ch := u.exited
	u.mu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL (kill -9: no shutdown, no resume, connections cut) and waits for
// the process to be gone.
func (u *Up) Kill() error {
	return u.signal(syscall.SIGKILL, 10*time.Second)
}

// Stop sends SIGTERM, and SIGKILL if the process has not exited after 15 seconds.
func (u *Up) Stop() error {
	if err := u.signal(syscall.SIGTERM, 15*time.Second); err == nil {
		return nil
	}
	return u.Kill()
}

func (u *Up) signal(sig syscall.Signal, wait time.Duration) error {
	u.mu.Lock()
	cmd, exited := u.cmd, u.exited
	u.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal freezeframe up: %w", err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(wait):
		return fmt.Errorf("freezeframe up (pid %d) still running %s after %v", cmd.Process.Pid, wait, sig)
	}
}

// Restart starts the process again, after Kill or Stop, with the same state directory
// and NATS port, and waits until it is ready.
func (u *Up) Restart(ctx context.Context) error {
	if u.Running() {
		return errors.New("restart freezeframe up: still running")
	}
	return u.start(ctx)
}

// Connect returns a NATS connection as the operator (with a Bus) and an events client
// over it. Close the connection when done; without a Bus it does not survive a restart
// of the process.
func (u *Up) Connect() (*nats.Conn, *events.Client, error) {
	return u.ConnectAs(userRole)
}

// ConnectAs is Connect as another role: a service's, to publish what only that service
// may (a redelivery), or admin, to look at consumers and buckets. Its events carry the
// role's source. Without a Bus every role is the same anonymous user.
func (u *Up) ConnectAs(role events.Role) (*nats.Conn, *events.Client, error) {
	nc, err := u.dial(role, nats.Timeout(2*time.Second), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		return nil, nil, err
	}
	source := role.Source()
	if role == events.RoleAdmin {
		source = events.SourceClient
	}
	client, err := events.NewClient(nc, events.WithSource(source))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, client, nil
}

func (u *Up) dial(role events.Role, opts ...nats.Option) (*nats.Conn, error) {
	if u.opts.Bus != nil {
		return u.opts.Bus.Connect(role, opts...)
	}
	nc, err := nats.Connect(u.NATSURL(), opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", u.NATSURL(), err)
	}
	return nc, nil
}

// LogTail returns the last n lines of the process's log.
func (u *Up) LogTail(n int) string { return logTail(u.opts.LogPath, n) }

// logTail returns the last n lines of the file at path.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// cleanEnv is this process's environment without anything that would point the services
// elsewhere (another NATS, cluster or kubeconfig).
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "KUBECONFIG", k == "CLUSTER", k == "STREAM", strings.HasPrefix(k, "NATS_"),
			strings.HasPrefix(k, "FREEZEFRAME_"), strings.HasPrefix(k, "SCHEDULER_"),
			strings.HasPrefix(k, "HOOKER_"), strings.HasPrefix(k, "SNAPSHOTTER_"),
			strings.HasPrefix(k, "NOTIFIER_"), strings.HasPrefix(k, "OTEL_"):
			continue
		}
		out = append(out, kv)
	}
	return out
}
