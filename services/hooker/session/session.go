package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sync"
	"time"

	"github.com/freezeframe/freezeframe/services/hooker/podexec"
)

// Executor runs a command in a pod; *podexec.Executor is one. A session
// needs Exec to stream Request.Stdin to the command and close the command's
// stdin when Request.Stdin reaches EOF, to write output to Request.Stdout and
// Request.Stderr as it comes, and to return when the command exits or ctx
// ends, closing the stream.
type Executor interface {
	Exec(ctx context.Context, r podexec.Request) (podexec.Result, error)
}

// DefaultReadyTimeout bounds the wait for the ready pattern when
// Spec.ReadyTimeout is zero. Taking FLUSH TABLES WITH READ LOCK waits for
// running statements to finish; a database that cannot be locked in this
// long should fail the backup rather than stall writes while it tries.
const DefaultReadyTimeout = 30 * time.Second

const (
	// stopGrace bounds the wait for Exec to return once its stream was
	// closed on purpose; an executor that ignores cancellation must not
	// hang the caller.
	stopGrace = 10 * time.Second
	// watchLimit bounds the output kept for matching: a client that prints
	// a lot before the ready line must not grow memory without limit.
	watchLimit = 64 << 10
	// stderrLimit bounds the stderr kept for error messages, which quote
	// only its last line.
	stderrLimit = 4 << 10
)

// Sentinel errors; match them with errors.Is. Errors from this package carry
// them, and the context's error when that is why, but not the executor's own
// error: its text went through Spec.Redact and the original is dropped, so
// that unwrapping cannot reveal what was redacted.
var (
	// ErrTimeout: the ready pattern did not match within the ready timeout.
	ErrTimeout = errors.New("ready pattern not matched in time")
	// ErrExited: the command ended before the session was held, with a
	// failure or right after printing the ready pattern (a client that does
	// not read stdin, such as mariadb -e, drops its lock as it exits).
	ErrExited = errors.New("command exited before the session was held")
	// ErrNoMatch: the command exited successfully without its output
	// matching the ready pattern.
	ErrNoMatch = errors.New("command exited without printing the ready pattern")
	// ErrLost: the session ended before Release; the lock is gone.
	ErrLost = errors.New("session ended before release")
	// ErrMaxHold: the session was ended because it was held past
	// Spec.MaxHold. Comes with ErrLost.
	ErrMaxHold = errors.New("session held past its limit")
	// ErrRelease: the release did not end the command cleanly (it exited
	// with a failure, or did not exit in time and its stream was closed).
	// The session is over all the same, and a session-bound lock with it.
	ErrRelease = errors.New("release did not end the command cleanly")
)

// errEnded cancels a session's exec context once Exec has returned.
var errEnded = errors.New("session ended")

// Spec is what to run and how to tell that the lock is held.
type Spec struct {
	Namespace string
	Pod       string
	Container string
	Command   []string
	// Stdin is written once the command has started; it takes the lock and
	// then prints something ReadyPattern matches. Include the newline that
	// makes a line-oriented client run it.
	Stdin string
	// ReadyPattern is matched against the command's standard output so far
	// (the last 64 KiB of it). It must not match empty output.
	ReadyPattern *regexp.Regexp
	// ReleaseInput is written by Release before stdin is closed. Empty means
	// closing stdin is the release.
	ReleaseInput string
	// ReadyTimeout bounds the wait for ReadyPattern; zero means
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// MaxHold, when set, ends a session not released this long after it was
	// held, by closing its stream: a backstop inside the holder for a resume
	// that never comes, in addition to the freeze lease's watchdog.
	MaxHold time.Duration
	// Redact is applied to every error message, which may quote the last
	// line the command wrote to stderr (a client may echo a statement, and
	// the password in it); nil leaves messages as they are.
	Redact func(string) string
}

// Session is a command holding a lock in its client session, between Start
// and Release.
type Session struct {
	where   string // "ns/pod container c", for messages
	release string
	redact  func(string) string
	cancel  context.CancelCauseFunc

	stdin   *io.PipeWriter
	stdinMu sync.Mutex // keeps the release input after the initial input
	out     *watcher
	errTail *tail

	done chan struct{} // closed when Exec has returned; then res and execErr are set
	lost chan struct{}
	// res and execErr are written once, before done is closed.
	res     podexec.Result
	execErr error
	// holdTimer is set before Start returns and only stopped afterwards.
	holdTimer *time.Timer

	mu         sync.Mutex
	releasing  bool          // Release was called; the end is expected
	endErr     error         // why the session ended on its own, once it has
	released   chan struct{} // closed when the first Release finished
	releaseErr error         // written before released is closed
}

// Start runs spec.Command with stdin open, writes spec.Stdin and returns once
// the command's output matches spec.ReadyPattern: from then on the lock is
// held, until Release or until the session is lost.
//
// ctx bounds only the start. The exec itself is detached from ctx's
// cancellation, because the session must outlive the pre-hook's call: ending
// it early would release the lock under the snapshot.
//
// On error nothing is held: the command's stdin and stream are closed, which
// ends its session (waiting a bounded time for the executor to confirm).
func Start(ctx context.Context, ex Executor, spec Spec) (*Session, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	readyTimeout := spec.ReadyTimeout
	if readyTimeout <= 0 {
		readyTimeout = DefaultReadyTimeout
	}
	pr, pw := io.Pipe()
	execCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	s := &Session{
		where:   fmt.Sprintf("%s/%s container %s", spec.Namespace, spec.Pod, spec.Container),
		release: spec.ReleaseInput,
		redact:  spec.Redact,
		cancel:  cancel,
		stdin:   pw,
		out:     &watcher{re: spec.ReadyPattern, matched: make(chan struct{})},
		errTail: &tail{},
		done:    make(chan struct{}),
		lost:    make(chan struct{}),
	}
	if s.redact == nil {
		s.redact = func(msg string) string { return msg }
	}
	req := podexec.Request{
		Namespace: spec.Namespace, Pod: spec.Pod, Container: spec.Container, Command: spec.Command,
		Stdin: pr, Stdout: s.out, Stderr: s.errTail,
	}
	go s.run(execCtx, ex, req, pr)
	go func() {
		// A failed write means Exec has returned and closed the pipe, which
		// Start sees on s.done with the reason.
		_ = s.write(spec.Stdin)
	}()

	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	var why error
	select {
	case <-s.out.matched:
	case <-s.done:
	case <-timer.C:
		why = ErrTimeout
	case <-ctx.Done():
		why = ctx.Err()
	}
	if why == nil {
		select {
		case <-s.done:
		default:
			if spec.MaxHold > 0 {
				s.holdTimer = time.AfterFunc(spec.MaxHold, func() { s.cancel(ErrMaxHold) })
			}
			return s, nil
		}
	}
	return nil, s.startError(why, readyTimeout)
}

func (spec Spec) check() error {
	switch {
	case len(spec.Command) == 0:
		return errors.New("start session: empty command")
	case spec.ReadyPattern == nil:
		return errors.New("start session: no ready pattern")
	case spec.ReadyPattern.MatchString(""):
		// It would count the lock as taken before anything was printed.
		return errors.New("start session: ready pattern matches empty output")
	}
	return nil
}

// startError tears the session down and says why it could not be held. why
// is nil when the command ended by itself.
func (s *Session) startError(why error, readyTimeout time.Duration) error {
	// What was printed before the deadline, not what stopping the command
	// flushed out of it.
	printed := s.out.seen()
	stopped := true
	if why != nil {
		stopped = s.stop(why)
	}
	prefix := "start session in " + s.where
	switch {
	case errors.Is(why, ErrTimeout):
		detail := fmt.Sprintf("%s (%s)", ErrTimeout, readyTimeout)
		if n := printed; n == 0 {
			// The usual cause, and a silent one: the client buffers its
			// output on a pipe and would print only when it exits.
			detail += ": the command printed nothing on stdout (does it buffer its output? run mariadb with --unbuffered)"
		} else {
			detail += fmt.Sprintf(": %d bytes on stdout did not match", n)
		}
		return s.errorf([]error{ErrTimeout}, "%s: %s%s", prefix, detail, s.stderrNote(stopped))
	case why != nil:
		return s.errorf([]error{why}, "%s: %s%s", prefix, why, s.stderrNote(stopped))
	case s.out.isMatched():
		return s.errorf([]error{ErrExited}, "%s: %s: it %s right after printing the ready pattern, so its lock went with it (the command must read stdin and keep running until EOF)",
			prefix, ErrExited, s.exitDetail())
	case s.execErr == nil:
		return s.errorf([]error{ErrNoMatch}, "%s: %s: it %s after %d bytes on stdout", prefix, ErrNoMatch, s.exitDetail(), s.out.seen())
	default:
		return s.errorf([]error{ErrExited}, "%s: %s: it %s", prefix, ErrExited, s.exitDetail())
	}
}

func (s *Session) stderrNote(stopped bool) string {
	var note string
	if line := s.errTail.lastLine(); line != "" {
		note = "; last stderr line: " + line
	}
	if !stopped {
		note += fmt.Sprintf("; the exec did not return within %s of closing its stream", stopGrace)
	}
	return note
}

// exitDetail says how the command ended; call it after s.done.
func (s *Session) exitDetail() string {
	var d string
	var exitErr *podexec.ExitError
	switch {
	case s.execErr == nil:
		d = "exited with status 0"
	case errors.As(s.execErr, &exitErr):
		// Not exitErr.Error(): it quotes stderr, which may need redacting
		// and is quoted below anyway.
		d = fmt.Sprintf("exited with status %d", exitErr.Code)
	default:
		d = "ended: " + s.execErr.Error()
	}
	line := s.errTail.lastLine()
	if line == "" {
		line = podexec.LastLine(s.res.Stderr)
	}
	if line != "" {
		d += " (last stderr line: " + line + ")"
	}
	return d
}

func (s *Session) errorf(kinds []error, format string, args ...any) error {
	return &sessionError{msg: s.redact(fmt.Sprintf(format, args...)), kinds: kinds}
}

// run is the session's exec; it returns when the command's session ended.
func (s *Session) run(ctx context.Context, ex Executor, req podexec.Request, stdin *io.PipeReader) {
	res, err := ex.Exec(ctx, req)
	// Nothing reads stdin any more: make writes fail instead of waiting.
	stdin.Close()
	s.res, s.execErr = res, err
	s.mu.Lock()
	if !s.releasing {
		kinds := []error{ErrLost}
		why := ""
		if errors.Is(context.Cause(ctx), ErrMaxHold) {
			kinds = append(kinds, ErrMaxHold)
			why = ": " + ErrMaxHold.Error() + ", so its stream was closed"
		}
		s.endErr = s.errorf(kinds, "session in %s: %s%s: the command %s", s.where, ErrLost, why, s.exitDetail())
		close(s.lost)
	}
	s.mu.Unlock()
	s.cancel(errEnded) // frees the context; the cause above was read first
	close(s.done)
}

func (s *Session) write(input string) error {
	s.stdinMu.Lock()
	defer s.stdinMu.Unlock()
	if input == "" {
		return nil
	}
	_, err := io.WriteString(s.stdin, input)
	return err
}

// stop closes the command's stdin and its stream, either of which ends the
// client's session, and reports whether Exec returned within stopGrace.
func (s *Session) stop(cause error) bool {
	s.stdin.Close()
	s.cancel(cause)
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-s.done:
		return true
	case <-t.C:
		return false
	}
}

// Lost is closed if the session ended before Release was called: the
// database released the lock on its own and the application is no longer
// frozen. Err says why.
func (s *Session) Lost() <-chan struct{} { return s.lost }

// Err returns why the session was lost (wrapping ErrLost), or nil while it
// is held or once it was released.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endErr
}

// Release writes the release input, closes stdin and waits for the command
// to exit. If ctx ends first, it closes the exec stream instead, which ends
// the session (and the lock) just the same, and returns an error wrapping
// ErrRelease and ctx's error.
//
// Release is idempotent: later and concurrent calls wait for the first and
// return its result. A session that was lost returns its Err: the
// application was not frozen until the resume.
func (s *Session) Release(ctx context.Context) error {
	s.mu.Lock()
	if s.released != nil {
		ch := s.released
		s.mu.Unlock()
		select {
		case <-ch:
			return s.releaseErr
		case <-ctx.Done():
			return s.errorf([]error{ctx.Err()}, "release session in %s: waiting for a release in progress: %s", s.where, ctx.Err())
		}
	}
	s.released = make(chan struct{})
	s.releasing = true
	lost := s.endErr
	s.mu.Unlock()

	if s.holdTimer != nil {
		s.holdTimer.Stop()
	}
	err := lost
	if err == nil {
		err = s.releaseHeld(ctx)
	}
	s.releaseErr = err
	close(s.released)
	return err
}

func (s *Session) releaseHeld(ctx context.Context) error {
	go func() {
		// A failed write means the command already ended, which is what
		// the release is for; the wait below sees how it ended.
		_ = s.write(s.release)
		// EOF on stdin is what makes the client exit.
		s.stdin.Close()
	}()
	select {
	case <-s.done:
	case <-ctx.Done():
		stopped := s.stop(fmt.Errorf("release: %w", context.Cause(ctx)))
		return s.errorf([]error{ErrRelease, ctx.Err()}, "release session in %s: %s: the command did not exit before %s; closed its exec stream instead, which ends the session%s",
			s.where, ErrRelease, ctx.Err(), s.stderrNote(stopped))
	}
	if s.execErr == nil {
		return nil
	}
	return s.errorf([]error{ErrRelease}, "release session in %s: %s: the command %s", s.where, ErrRelease, s.exitDetail())
}

// sessionError holds an already redacted message and the sentinels it
// matches.
type sessionError struct {
	msg   string
	kinds []error
}

func (e *sessionError) Error() string   { return e.msg }
func (e *sessionError) Unwrap() []error { return e.kinds }

// watcher is the command's stdout: it matches the ready pattern against the
// output so far and closes matched once it does.
type watcher struct {
	re      *regexp.Regexp
	matched chan struct{}

	mu   sync.Mutex
	buf  []byte
	n    int64
	done bool
}

func (w *watcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += int64(len(p))
	if w.done {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - watchLimit; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	// The whole tail, not the new bytes alone: a ready line may arrive in
	// pieces.
	if w.re.Match(w.buf) {
		w.done = true
		w.buf = nil
		close(w.matched)
	}
	return len(p), nil
}

func (w *watcher) seen() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

func (w *watcher) isMatched() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}

// tail keeps the end of the command's stderr for error messages.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - stderrLimit; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) lastLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return podexec.LastLine(t.buf)
}
