package session

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/services/hooker/podexec"
)

// exitSpec is how the fake client ends.
type exitSpec struct {
	code   int
	stderr string
}

// fakeClient stands in for a database client run in a pod: it reads
// statements from stdin line by line, answers a line that takes the lock
// ("LOCK" without "UNLOCK") with a ready line, and exits when stdin ends, as
// mariadb and psql do. Options make it misbehave.
type fakeClient struct {
	silent         bool      // never prints the ready line
	onFirstLine    *exitSpec // exits after reading the first line
	exitAfterReady bool      // prints the ready line, then exits (ignores the rest of stdin)
	ignoreEOF      bool      // keeps running after stdin ends, until its stream is closed
	onEOF          exitSpec  // how it exits once stdin ended
	crash          chan struct{}
	readyPieces    []string // the ready output, written in these pieces

	once   sync.Once
	mu     sync.Mutex
	lines  []string
	ctx    context.Context
	exited chan struct{} // closed when Exec returns
}

func (f *fakeClient) init() { f.once.Do(func() { f.exited = make(chan struct{}) }) }

// done is closed when Exec has returned.
func (f *fakeClient) done() <-chan struct{} {
	f.init()
	return f.exited
}

func (f *fakeClient) Exec(ctx context.Context, r podexec.Request) (podexec.Result, error) {
	f.init()
	defer close(f.exited)
	f.mu.Lock()
	f.ctx = ctx
	f.mu.Unlock()

	lines := make(chan string)
	eof := make(chan struct{})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		sc := bufio.NewScanner(r.Stdin)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-stop:
				return
			}
		}
		close(eof)
	}()
	exit := func(e exitSpec) (podexec.Result, error) {
		if e.stderr != "" {
			fmt.Fprintln(r.Stderr, e.stderr)
		}
		if e.code != 0 {
			return podexec.Result{ExitCode: e.code}, &podexec.ExitError{Code: e.code, Stderr: e.stderr}
		}
		return podexec.Result{}, nil
	}
	for {
		select {
		case l := <-lines:
			f.mu.Lock()
			f.lines = append(f.lines, l)
			n := len(f.lines)
			f.mu.Unlock()
			if n == 1 && f.onFirstLine != nil {
				return exit(*f.onFirstLine)
			}
			if strings.Contains(l, "LOCK") && !strings.Contains(l, "UNLOCK") && !f.silent {
				pieces := f.readyPieces
				if pieces == nil {
					pieces = []string{"LOCKED\n"}
				}
				for _, p := range pieces {
					io.WriteString(r.Stdout, p)
				}
				if f.exitAfterReady {
					return exit(exitSpec{})
				}
			}
		case <-eof:
			if f.ignoreEOF {
				eof = nil
				continue
			}
			return exit(f.onEOF)
		case <-f.crash:
			return exit(exitSpec{code: 137, stderr: "ERROR 2013 (HY000): Lost connection to server during query"})
		case <-ctx.Done():
			return podexec.Result{}, fmt.Errorf("exec in %s/%s: %w", r.Namespace, r.Pod, context.Cause(ctx))
		}
	}
}

func (f *fakeClient) gotLines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

// execCtx is the context the session gave Exec.
func (f *fakeClient) execCtx() context.Context {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctx
}

func testSpec() Spec {
	return Spec{
		Namespace: "db", Pod: "mariadb-0", Container: "mariadb",
		Command:      []string{"mariadb", "-N"},
		Stdin:        "FLUSH TABLES WITH READ LOCK; SELECT 'LOCKED';\n",
		ReadyPattern: regexp.MustCompile(`(?m)^LOCKED$`),
		ReleaseInput: "UNLOCK TABLES;\n",
		ReadyTimeout: 5 * time.Second,
	}
}

// waitClosed waits for ch to close, failing the test after d.
func waitClosed(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ch:
	case <-timer.C:
		t.Fatalf("%s: not within %s", what, d)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestStartAndRelease(t *testing.T) {
	f := &fakeClient{}
	s, err := Start(t.Context(), f, testSpec())
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if isClosed(s.Lost()) || s.Err() != nil {
		t.Fatalf("session lost right after Start: %v", s.Err())
	}
	if isClosed(f.done()) {
		t.Fatal("the command exited while the session is held")
	}

	// Concurrent and repeated releases: one unlock, the same answer.
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() { errs[i] = s.Release(t.Context()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Release #%d: %v", i, err)
		}
	}
	if err := s.Release(t.Context()); err != nil {
		t.Errorf("Release again: %v", err)
	}
	if !isClosed(f.done()) {
		t.Error("Release returned before the command exited")
	}
	if isClosed(s.Lost()) || s.Err() != nil {
		t.Errorf("a released session counts as lost: %v", s.Err())
	}
	want := []string{"FLUSH TABLES WITH READ LOCK; SELECT 'LOCKED';", "UNLOCK TABLES;"}
	if got := f.gotLines(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("stdin = %q, want %q", got, want)
	}
}

// The session must outlive the pre-hook call that started it.
func TestSessionOutlivesStartContext(t *testing.T) {
	f := &fakeClient{}
	ctx, cancel := context.WithCancel(t.Context())
	s, err := Start(ctx, f, testSpec())
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	cancel() // cancellation propagates synchronously: no wait needed
	if err := f.execCtx().Err(); err != nil {
		t.Fatalf("cancelling Start's context ended the exec: %v", err)
	}
	if err := s.Release(t.Context()); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	const secret = "s3cr3t-pw"
	redact := func(s string) string { return strings.ReplaceAll(s, secret, "[REDACTED]") }
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name     string
		client   *fakeClient
		ctx      context.Context
		timeout  time.Duration
		wantIs   error
		wantText []string
	}{
		{
			name:     "never ready",
			client:   &fakeClient{silent: true},
			timeout:  100 * time.Millisecond,
			wantIs:   ErrTimeout,
			wantText: []string{"start session in db/mariadb-0 container mariadb: ready pattern not matched in time (100ms)", "printed nothing on stdout", "--unbuffered"},
		},
		{
			name:     "exits early",
			client:   &fakeClient{onFirstLine: &exitSpec{code: 1, stderr: "ERROR 1045 (28000): Access denied for user 'root' (password " + secret + ")"}},
			wantIs:   ErrExited,
			wantText: []string{"command exited before the session was held: it exited with status 1 (last stderr line: ERROR 1045 (28000): Access denied for user 'root' (password [REDACTED]))"},
		},
		{
			name:     "exits without the ready line",
			client:   &fakeClient{silent: true, onFirstLine: &exitSpec{}},
			wantIs:   ErrNoMatch,
			wantText: []string{"command exited without printing the ready pattern: it exited with status 0 after 0 bytes on stdout"},
		},
		{
			name:     "ready pattern on stderr does not count",
			client:   &fakeClient{silent: true, onFirstLine: &exitSpec{code: 1, stderr: "ERROR 1064: near 'LOCKED'\nLOCKED"}},
			wantIs:   ErrExited,
			wantText: []string{"status 1"},
		},
		{
			name:     "context cancelled",
			client:   &fakeClient{silent: true},
			ctx:      cancelled,
			wantIs:   context.Canceled,
			wantText: []string{"start session in db/mariadb-0 container mariadb: context canceled"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec()
			spec.Redact = redact
			if tt.timeout > 0 {
				spec.ReadyTimeout = tt.timeout
			}
			ctx := tt.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			s, err := Start(ctx, tt.client, spec)
			if err == nil {
				s.Release(t.Context())
				t.Fatal("Start succeeded")
			}
			if s != nil {
				t.Error("Start returned a session with its error")
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want %v", err, tt.wantIs)
			}
			for _, w := range tt.wantText {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q\nwant it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("err is not redacted: %v", err)
			}
			// Nothing may stay held after a failed Start.
			if !isClosed(tt.client.done()) {
				t.Error("Start returned an error while the command still runs")
			}
		})
	}
}

// A client that prints the ready line and exits (mariadb -e, or one that
// does not read stdin) drops its lock as it goes. Start reports it when it
// sees the exit in time; otherwise the session is lost right away.
func TestExitRightAfterReady(t *testing.T) {
	f := &fakeClient{exitAfterReady: true}
	s, err := Start(t.Context(), f, testSpec())
	if err != nil {
		if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "right after printing the ready pattern") {
			t.Fatalf("err = %v, want ErrExited right after the ready pattern", err)
		}
		return
	}
	waitClosed(t, s.Lost(), 5*time.Second, "Lost")
	if !errors.Is(s.Err(), ErrLost) {
		t.Errorf("Err() = %v, want ErrLost", s.Err())
	}
}

func TestLost(t *testing.T) {
	tests := []struct {
		name    string
		client  *fakeClient
		maxHold time.Duration
		wantIs  []error
	}{
		{name: "client dies", client: &fakeClient{crash: make(chan struct{})}, wantIs: []error{ErrLost}},
		{name: "held past MaxHold", client: &fakeClient{}, maxHold: 50 * time.Millisecond, wantIs: []error{ErrLost, ErrMaxHold}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec()
			spec.MaxHold = tt.maxHold
			s, err := Start(t.Context(), tt.client, spec)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			if tt.client.crash != nil {
				close(tt.client.crash)
			}
			waitClosed(t, s.Lost(), 5*time.Second, "Lost")
			for _, want := range tt.wantIs {
				if !errors.Is(s.Err(), want) {
					t.Errorf("Err() = %v, want %v", s.Err(), want)
				}
			}
			// The resume of a lost session reports it, at once.
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			if err := s.Release(ctx); !errors.Is(err, ErrLost) {
				t.Errorf("Release = %v, want ErrLost", err)
			}
		})
	}
}

func TestReleaseErrors(t *testing.T) {
	tests := []struct {
		name     string
		client   *fakeClient
		ctxLimit time.Duration
		wantIs   []error
		wantText string
	}{
		{
			name:     "command does not exit: stream closed at the deadline",
			client:   &fakeClient{ignoreEOF: true},
			ctxLimit: 100 * time.Millisecond,
			wantIs:   []error{ErrRelease, context.DeadlineExceeded},
			wantText: "the command did not exit before context deadline exceeded; closed its exec stream instead",
		},
		{
			name:     "release input fails",
			client:   &fakeClient{onEOF: exitSpec{code: 1, stderr: "ERROR 1064 (42000): You have an error in your SQL syntax"}},
			ctxLimit: 5 * time.Second,
			wantIs:   []error{ErrRelease},
			wantText: "the command exited with status 1 (last stderr line: ERROR 1064 (42000): You have an error in your SQL syntax)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Start(t.Context(), tt.client, testSpec())
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), tt.ctxLimit)
			defer cancel()
			err = s.Release(ctx)
			for _, want := range tt.wantIs {
				if !errors.Is(err, want) {
					t.Errorf("Release = %v, want %v", err, want)
				}
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Release = %v\nwant it to contain %q", err, tt.wantText)
			}
			// Either way the command's session is over.
			if !isClosed(tt.client.done()) {
				t.Error("Release returned while the command still runs")
			}
			if isClosed(s.Lost()) {
				t.Errorf("a released session counts as lost: %v", s.Err())
			}
			if again := s.Release(t.Context()); again != err {
				t.Errorf("second Release = %v, want the first's %v", again, err)
			}
		})
	}
}

func TestSpecCheck(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Spec)
		want   string
	}{
		{"empty command", func(s *Spec) { s.Command = nil }, "start session: empty command"},
		{"no pattern", func(s *Spec) { s.ReadyPattern = nil }, "start session: no ready pattern"},
		{"pattern matches nothing printed", func(s *Spec) { s.ReadyPattern = regexp.MustCompile(`.*`) }, "start session: ready pattern matches empty output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec()
			tt.modify(&spec)
			f := &fakeClient{}
			_, err := Start(t.Context(), f, spec)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if f.execCtx() != nil {
				t.Error("the command ran despite an invalid spec")
			}
		})
	}
}

func TestReadyPatternMatching(t *testing.T) {
	re := regexp.MustCompile(`(?m)^FREEZEFRAME-LOCKED$`)
	tests := []struct {
		name   string
		writes []string
		want   bool
	}{
		{"one line", []string{"FREEZEFRAME-LOCKED\n"}, true},
		{"in pieces", []string{"FREEZE", "FRAME-", "LOCKED\n"}, true},
		{"after other output", []string{"1\n2\n", "FREEZEFRAME-LOCKED\n"}, true},
		{"after more output than is kept", []string{strings.Repeat("x\n", watchLimit), "FREEZEFRAME-LOCKED\n"}, true},
		{"inside another line", []string{"not FREEZEFRAME-LOCKED yet\n"}, false},
		{"partial", []string{"FREEZEFRAME-LOCK"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &watcher{re: re, matched: make(chan struct{})}
			for _, s := range tt.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if got := isClosed(w.matched); got != tt.want {
				t.Errorf("matched = %v, want %v", got, tt.want)
			}
		})
	}

	// Through a session: the ready line arrives in two writes.
	f := &fakeClient{readyPieces: []string{"FREEZEFRAME", "-LOCKED\n"}}
	spec := testSpec()
	spec.ReadyPattern = re
	s, err := Start(t.Context(), f, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := s.Release(t.Context()); err != nil {
		t.Fatalf("Release: %v", err)
	}
}
