package session

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/services/hooker/podexec/podexectest"
)

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
	f := &podexectest.DBClient{}
	s, err := Start(t.Context(), f, testSpec())
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if isClosed(s.Lost()) || s.Err() != nil {
		t.Fatalf("session lost right after Start: %v", s.Err())
	}
	if isClosed(f.Done()) {
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
	if !isClosed(f.Done()) {
		t.Error("Release returned before the command exited")
	}
	if isClosed(s.Lost()) || s.Err() != nil {
		t.Errorf("a released session counts as lost: %v", s.Err())
	}
	want := []string{"FLUSH TABLES WITH READ LOCK; SELECT 'LOCKED';", "UNLOCK TABLES;"}
	if got := f.Lines(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("stdin = %q, want %q", got, want)
	}
}

// The session must outlive the pre-hook call that started it.
func TestSessionOutlivesStartContext(t *testing.T) {
	f := &podexectest.DBClient{}
	ctx, cancel := context.WithCancel(t.Context())
	s, err := Start(ctx, f, testSpec())
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	cancel() // cancellation propagates synchronously: no wait needed
	if err := f.ExecContext().Err(); err != nil {
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
		client   *podexectest.DBClient
		ctx      context.Context
		timeout  time.Duration
		wantIs   error
		wantText []string
	}{
		{
			name:     "never ready",
			client:   &podexectest.DBClient{Silent: true},
			timeout:  100 * time.Millisecond,
			wantIs:   ErrTimeout,
			wantText: []string{"start session in db/mariadb-0 container mariadb: ready pattern not matched in time (100ms)", "printed nothing on stdout", "--unbuffered"},
		},
		{
			name:     "exits early",
			client:   &podexectest.DBClient{OnFirstLine: &podexectest.Exit{Code: 1, Stderr: "ERROR 1045 (28000): Access denied for user 'root' (password " + secret + ")"}},
			wantIs:   ErrExited,
			wantText: []string{"command exited before the session was held: it exited with status 1 (last stderr line: ERROR 1045 (28000): Access denied for user 'root' (password [REDACTED]))"},
		},
		{
			name:     "exits without the ready line",
			client:   &podexectest.DBClient{Silent: true, OnFirstLine: &podexectest.Exit{}},
			wantIs:   ErrNoMatch,
			wantText: []string{"command exited without printing the ready pattern: it exited with status 0 after 0 bytes on stdout"},
		},
		{
			name:     "ready pattern on stderr does not count",
			client:   &podexectest.DBClient{Silent: true, OnFirstLine: &podexectest.Exit{Code: 1, Stderr: "ERROR 1064: near 'LOCKED'\nLOCKED"}},
			wantIs:   ErrExited,
			wantText: []string{"status 1"},
		},
		{
			name:     "context cancelled",
			client:   &podexectest.DBClient{Silent: true},
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
			if !isClosed(tt.client.Done()) {
				t.Error("Start returned an error while the command still runs")
			}
		})
	}
}

// A client that prints the ready line and exits (mariadb -e, or one that
// does not read stdin) drops its lock as it goes. Start reports it when it
// sees the exit in time; otherwise the session is lost right away.
func TestExitRightAfterReady(t *testing.T) {
	f := &podexectest.DBClient{ExitAfterReady: true}
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
		client  *podexectest.DBClient
		maxHold time.Duration
		wantIs  []error
	}{
		{name: "client dies", client: &podexectest.DBClient{Crash: make(chan struct{})}, wantIs: []error{ErrLost}},
		{name: "held past MaxHold", client: &podexectest.DBClient{}, maxHold: 50 * time.Millisecond, wantIs: []error{ErrLost, ErrMaxHold}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec()
			spec.MaxHold = tt.maxHold
			s, err := Start(t.Context(), tt.client, spec)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			if tt.client.Crash != nil {
				close(tt.client.Crash)
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
		client   *podexectest.DBClient
		ctxLimit time.Duration
		wantIs   []error
		wantText string
	}{
		{
			name:     "command does not exit: stream closed at the deadline",
			client:   &podexectest.DBClient{IgnoreEOF: true},
			ctxLimit: 100 * time.Millisecond,
			wantIs:   []error{ErrRelease, context.DeadlineExceeded},
			wantText: "the command did not exit before context deadline exceeded; closed its exec stream instead",
		},
		{
			name:     "release input fails",
			client:   &podexectest.DBClient{OnEOF: podexectest.Exit{Code: 1, Stderr: "ERROR 1064 (42000): You have an error in your SQL syntax"}},
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
			if !isClosed(tt.client.Done()) {
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
			f := &podexectest.DBClient{}
			_, err := Start(t.Context(), f, spec)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if f.ExecContext() != nil {
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
	f := &podexectest.DBClient{Ready: []string{"FREEZEFRAME", "-LOCKED\n"}}
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
