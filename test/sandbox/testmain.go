package sandbox

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// shared is the cluster Main started for this test binary. Package state, but only ever
// set by Main, before any test runs.
var shared *Cluster

// Main starts one sandbox for a test package, runs its tests, stops the sandbox and exits:
//
//	func TestMain(m *testing.M) { sandbox.Main(m, sandbox.Options{}) }
//
// Tests get the cluster with Shared(t). An interrupt (SIGINT, SIGTERM) stops the sandbox
// before the binary exits; a kill leaves no component running either (see Stop).
// Building the binaries cold takes longer than go test's default 10-minute timeout: run
// build.sh (make sandbox-build) first.
func Main(m *testing.M, opts Options) {
	os.Exit(runMain(m, opts))
}

func runMain(m *testing.M, opts Options) int {
	if !flag.Parsed() {
		flag.Parse() // for testing.Verbose; m.Run parses again harmlessly
	}
	if opts.Progress == nil && testing.Verbose() {
		opts.Progress = os.Stderr
	}
	if opts.BinDir == "" {
		// A cold build takes minutes: show its progress even without -v.
		bin, err := EnsureBinaries(context.Background(), os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		opts.BinDir = bin
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	c, err := Start(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	shared = c
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(os.Stderr, "sandbox: %v: stopping the cluster\n", s)
			_ = c.Stop()
			os.Exit(1)
		case <-done:
		}
	}()
	code := m.Run()
	close(done)
	signal.Stop(sigs)
	if err := c.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Shared returns the sandbox that Main started for this test binary.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if shared == nil {
		t.Fatal("sandbox.Shared: no sandbox; call sandbox.Main from TestMain")
	}
	return shared
}
