//go:build unix

package armed_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/hooker/armed"
	"github.com/freezeframe/freezeframe/services/hooker/podexec"
	"github.com/freezeframe/freezeframe/services/hooker/podexec/podexectest"
)

// arm starts an armed command on a local sh, returning the arm and the
// process, whose stdin the test may close as a dying hooker's stream would.
func arm(t *testing.T, fireUntil int64, cmd ...string) (*armed.Arm, *podexectest.LocalProc) {
	t.Helper()
	ex := &podexectest.Local{Started: make(chan *podexectest.LocalProc, 1)}
	a, err := armed.Start(t.Context(), ex, armed.Spec{Namespace: "ns", Pod: "p", Container: "c", Command: cmd, FireUntil: fireUntil, ReadyTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return a, <-ex.Started
}

func future() int64 { return time.Now().Add(time.Hour).UnixMilli() }

// waitFile waits for a file the command writes and returns its content.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	var b []byte
	eventstest.Eventually(t, 10*time.Second, path+" written", func() bool {
		var err error
		b, err = os.ReadFile(path)
		return err == nil
	})
	return string(b)
}

func TestResumeRunsTheCommandOnTheSameStream(t *testing.T) {
	a, _ := arm(t, future(), "sh", "-c", `echo "kando output x 1"; echo oops >&2; exit 3`)
	res, err := a.Resume(t.Context())
	var exitErr *podexec.ExitError
	if !errors.As(err, &exitErr) || exitErr.Code != 3 || exitErr.Stderr != "oops" {
		t.Fatalf("resume: %v, want exit 3 with stderr oops", err)
	}
	if string(res.Stdout) != "kando output x 1\n" || string(res.Stderr) != "oops\n" {
		t.Errorf("stdout %q stderr %q: want the command's output alone", res.Stdout, res.Stderr)
	}
	select {
	case <-a.Lost():
		t.Error("a resumed arm counts as lost")
	default:
	}
}

func TestResumeOfACommandWithoutStderrHasNoReadyLineInItsError(t *testing.T) {
	a, _ := arm(t, future(), "false")
	_, err := a.Resume(t.Context())
	var exitErr *podexec.ExitError
	if !errors.As(err, &exitErr) || exitErr.Stderr != "" {
		t.Fatalf("resume: %#v, want an exit error with empty stderr", err)
	}
}

func TestDisarmRunsNothing(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	a, _ := arm(t, future(), "touch", marker)
	a.Disarm()
	<-a.Done()
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("disarmed command ran (stat: %v)", err)
	}
	if _, err := a.Resume(t.Context()); !errors.Is(err, armed.ErrLost) {
		t.Errorf("resume after disarm: %v, want ErrLost", err)
	}
}

func TestEndOfStdinFiresWithinTheLimit(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	a, proc := arm(t, future(), "sh", "-c", "echo fired > "+marker)
	proc.Stdin.Close() // the hooker's stream is gone
	if got := waitFile(t, marker); got != "fired\n" {
		t.Fatalf("marker %q", got)
	}
	<-a.Lost()
	if !errors.Is(a.Err(), armed.ErrLost) {
		t.Errorf("err %v, want ErrLost", a.Err())
	}
	if _, err := a.Resume(t.Context()); !errors.Is(err, armed.ErrLost) {
		t.Errorf("resume of a fired arm: %v, want ErrLost", err)
	}
}

func TestEndOfStdinPastTheLimitRunsNothing(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	a, proc := arm(t, time.Now().Add(-2*time.Second).UnixMilli(), "touch", marker)
	proc.Stdin.Close()
	<-a.Done()
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("command ran past its fire limit (stat: %v)", err)
	}
}

func TestExtendMovesTheLimit(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	local := &podexectest.Local{Started: make(chan *podexectest.LocalProc, 1)}
	limitSent := make(chan struct{})
	var latest int64
	ex := execFunc(func(ctx context.Context, r podexec.Request) (podexec.Result, error) {
		r.Stdin = io.TeeReader(r.Stdin, lineWatch(func(line string) {
			if line == armed.UntilPrefix+strconv.FormatInt(latest, 10) {
				close(limitSent)
			}
		}))
		return local.Exec(ctx, r)
	})
	a, err := armed.Start(t.Context(), ex, armed.Spec{Namespace: "ns", Pod: "p", Container: "c", Command: []string{"touch", marker},
		FireUntil: time.Now().Add(-2 * time.Second).UnixMilli(), ReadyTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	proc := <-local.Started
	latest = future()
	a.Extend(latest)
	<-limitSent
	proc.Stdin.Close()
	waitFile(t, marker)
}

// lineWatch calls f with each line written to it.
type lineWatch func(line string)

func (f lineWatch) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimSuffix(string(p), "\n"), "\n") {
		f(l)
	}
	return len(p), nil
}

func TestNotArmedWhenTheExecFails(t *testing.T) {
	ex := execFunc(func(ctx context.Context, r podexec.Request) (podexec.Result, error) {
		return podexec.Result{ExitCode: 127}, &podexec.ExitError{Code: 127, Stderr: "sh: not found"}
	})
	_, err := armed.Start(t.Context(), ex, armed.Spec{Namespace: "ns", Pod: "p", Container: "c", Command: []string{"true"}, FireUntil: future()})
	if !errors.Is(err, armed.ErrNotArmed) || !strings.Contains(err.Error(), "sh: not found") {
		t.Fatalf("start: %v, want ErrNotArmed naming the exec's error", err)
	}
}

func TestResumeTimeoutClosesTheStream(t *testing.T) {
	a, _ := arm(t, future(), "sleep", "30")
	ctx, cancel := context.WithTimeoutCause(t.Context(), 100*time.Millisecond, errors.New("hook timeout 100ms"))
	defer cancel()
	_, err := a.Resume(ctx)
	if err == nil || !strings.Contains(err.Error(), "hook timeout 100ms") {
		t.Fatalf("resume: %v, want the hook timeout", err)
	}
}

type execFunc func(ctx context.Context, r podexec.Request) (podexec.Result, error)

func (f execFunc) Exec(ctx context.Context, r podexec.Request) (podexec.Result, error) {
	return f(ctx, r)
}
