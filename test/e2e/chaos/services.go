package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/freezeframe/freezeframe/test/sandbox"
)

// The four services, in the order they are started.
const (
	Scheduler   = "scheduler"
	Hooker      = "hooker"
	Snapshotter = "snapshotter"
	Notifier    = "notifier"
)

// ServiceNames lists the services in start order.
var ServiceNames = []string{Scheduler, Hooker, Snapshotter, Notifier}

// Service is one service binary run as its own process; its /readyz (on a free
// loopback port, HTTP_ADDR) says when it is ready.
type Service struct {
	*Proc
	// Kind is the service (Scheduler, Hooker, ...); Name (of the Proc) tells
	// replicas apart.
	Kind     string
	HTTPPort int
}

// ServiceOptions configures one service process.
type ServiceOptions struct {
	// Kind is Scheduler, Hooker, Snapshotter or Notifier; Name the replica
	// (the process and log name); Kind when empty.
	Kind, Name string
	// BinDir holds the binaries `make build` puts in bin/.
	BinDir string
	// LogDir receives <Name>.log.
	LogDir string
	// Env is the configuration without prefix (NATS_URL=..., MAX_FREEZE=5s):
	// each key is given the service's prefix (HOOKER_NATS_URL).
	Env []string
}

// StartService starts a service and waits until it is ready.
func StartService(ctx context.Context, opts ServiceOptions) (*Service, error) {
	if opts.Name == "" {
		opts.Name = opts.Kind
	}
	port, err := sandbox.FreePort()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", opts.Name, err)
	}
	prefix := strings.ToUpper(opts.Kind) + "_"
	env := baseEnv()
	for _, kv := range append(opts.Env, "HTTP_ADDR=127.0.0.1:"+strconv.Itoa(port), "SHUTDOWN_TIMEOUT=3s", "LOG_LEVEL=debug") {
		env = append(env, prefix+kv)
	}
	s := &Service{Kind: opts.Kind, HTTPPort: port, Proc: &Proc{
		Name: opts.Name, Bin: filepath.Join(opts.BinDir, opts.Kind), Env: env,
		Log: filepath.Join(opts.LogDir, opts.Name+".log"),
	}}
	if err := s.Restart(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Restart starts the (exited) service again and waits until it is ready.
func (s *Service) Restart(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	if err := s.WaitReady(ctx); err != nil {
		_ = s.Kill(ctx)
		return fmt.Errorf("start %s: %w\n%s", s.Name, err, logTail(s.Log, 30))
	}
	return nil
}

// WaitReady waits until /readyz answers 200.
func (s *Service) WaitReady(ctx context.Context) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", s.HTTPPort)
	client := &http.Client{Timeout: time.Second}
	return poll(ctx, 60*time.Second, 50*time.Millisecond, s.Name+" ready", func() (bool, error) {
		select {
		case <-s.Exited():
			return false, fmt.Errorf("%s exited", s.Name)
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// baseEnv is this process's environment without anything that would point the
// services elsewhere (another NATS, cluster or kubeconfig, telemetry).
func baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "KUBECONFIG", k == "CLUSTER", k == "STREAM", k == "POD_NAME", k == "HTTP_ADDR",
			strings.HasPrefix(k, "NATS_"), strings.HasPrefix(k, "FREEZEFRAME_"),
			strings.HasPrefix(k, "SCHEDULER_"), strings.HasPrefix(k, "HOOKER_"),
			strings.HasPrefix(k, "SNAPSHOTTER_"), strings.HasPrefix(k, "NOTIFIER_"),
			strings.HasPrefix(k, "SLACK_"), strings.HasPrefix(k, "OTEL_"):
			continue
		}
		out = append(out, kv)
	}
	return out
}

// logTail returns the last n lines of a file.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
