package armed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/freezeframe/freezeframe/services/hooker/podexec"
)

// Executor runs a command in a pod; *podexec.Executor is one. An arm needs
// Exec to stream Request.Stdin to the command and close the command's stdin
// when Request.Stdin reaches EOF, to write stderr to Request.Stderr as it
// comes, and to return when the command exits or ctx ends, closing the
// stream.
type Executor interface {
	Exec(ctx context.Context, r podexec.Request) (podexec.Result, error)
}

// The script's words. Test doubles that stand in for a pod (podexectest)
// speak them too.
const (
	// Name is the script's $0, which also marks an armed command.
	Name = "freezeframe-armed"
	// ReadyLine is printed on stderr once the script runs: from then on,
	// the end of its stdin fires the post-hook (within the limit).
	ReadyLine = Name + ": armed"
	// ResumeLine runs the post-hook now.
	ResumeLine = "resume"
	// DisarmLine ends the script without running the post-hook.
	DisarmLine = "disarm"
	// UntilPrefix, followed by unix milliseconds, moves the fire limit.
	UntilPrefix = "until "
)

// script is the POSIX sh program the exec runs; $1 is the fire limit in
// unix milliseconds, the rest the post-hook command. The time is read with
// GNU date's %N; a date without it (busybox) gives whole seconds, taken as
// the last millisecond of that second, so that the comparison only ever
// errs towards not firing. The notices are written
// from a subshell: when the stream is gone, a write into it may raise
// SIGPIPE, which must end the subshell, not the switch.
const script = `limit=$1; shift
(printf '%s\n' '` + ReadyLine + `' >&2)
while IFS= read -r line; do
	case $line in
	'` + UntilPrefix + `'*) limit=${line#` + UntilPrefix + `} ;;
	` + ResumeLine + `) exec "$@" </dev/null ;;
	` + DisarmLine + `) exit 0 ;;
	esac
done
now=$(date +%s%3N 2>/dev/null)
case $now in
''|*[!0-9]*) now=$(( $(date +%s) * 1000 + 999 )) ;;
esac
if [ "$now" -le "$limit" ] 2>/dev/null; then
	(printf '%s\n' '` + Name + `: the hooker stream ended before the resume: running the post-hook (dead man switch)' >&2)
	exec "$@" </dev/null >/dev/null 2>&1
fi
(printf '%s\n' '` + Name + `: the hooker stream ended past the fire limit: not running the post-hook' >&2)
exit 0
`

// Command wraps a post-hook command into the armed script with its first
// fire limit (unix milliseconds).
func Command(fireUntil int64, cmd []string) []string {
	return append([]string{"sh", "-c", script, Name, strconv.FormatInt(fireUntil, 10)}, cmd...)
}

// Unwrap returns the post-hook command of an armed command and its first
// fire limit; ok is false for any other command.
func Unwrap(cmd []string) (inner []string, fireUntil int64, ok bool) {
	if len(cmd) < 5 || cmd[0] != "sh" || cmd[1] != "-c" || cmd[2] != script || cmd[3] != Name {
		return nil, 0, false
	}
	fireUntil, err := strconv.ParseInt(cmd[4], 10, 64)
	if err != nil {
		return nil, 0, false
	}
	return cmd[5:], fireUntil, true
}

// Sentinel errors; match them with errors.Is.
var (
	// ErrLost: the exec ended before Resume or Disarm; the post-hook may
	// have run by itself (the switch fired), or the pod went away.
	ErrLost = errors.New("armed post-hook ended before the resume")
	// ErrNotArmed: the script did not report itself running (no sh in the
	// image, exec refused, too slow); nothing is armed.
	ErrNotArmed = errors.New("post-hook not armed")
)

// stopGrace bounds the wait for the script to read "disarm" before its
// stream is closed.
const stopGrace = 5 * time.Second

// Spec is the post-hook to arm and where.
type Spec struct {
	Namespace string
	Pod       string
	Container string
	Command   []string
	// FireUntil is the first fire limit, in unix milliseconds.
	FireUntil int64
	// ReadyTimeout bounds the wait for the script to run.
	ReadyTimeout time.Duration
}

// Arm is a post-hook waiting in its pod for the resume.
type Arm struct {
	where  string
	cancel context.CancelCauseFunc
	stdin  *io.PipeWriter
	// writing serialises writes to stdin; limits carries the latest limit
	// to the writer goroutine, so that Extend never waits on the stream.
	writing sync.Mutex
	limits  chan int64

	done chan struct{} // closed when Exec returned; res and execErr set before
	lost chan struct{}
	res  podexec.Result
	// execErr is Exec's error.
	execErr error

	mu      sync.Mutex
	settled bool  // resume or disarm was written: the end is expected
	endErr  error // why the exec ended unasked, once it has
}

// Start opens the armed exec and returns once the script runs. ctx bounds
// only the start: the exec outlives it, detached from its cancellation,
// until Resume or Disarm. On error nothing is armed: the script, if it
// started, was told to disarm.
func Start(ctx context.Context, ex Executor, spec Spec) (*Arm, error) {
	if len(spec.Command) == 0 {
		return nil, fmt.Errorf("%w: empty command", ErrNotArmed)
	}
	pr, pw := io.Pipe()
	execCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	a := &Arm{
		where:  fmt.Sprintf("%s/%s container %s", spec.Namespace, spec.Pod, spec.Container),
		cancel: cancel, stdin: pw, limits: make(chan int64, 1),
		done: make(chan struct{}), lost: make(chan struct{}),
	}
	ready := &readyWatch{seen: make(chan struct{})}
	req := podexec.Request{Namespace: spec.Namespace, Pod: spec.Pod, Container: spec.Container,
		Command: Command(spec.FireUntil, spec.Command), Stdin: pr, Stderr: ready}
	go a.run(execCtx, ex, req, pr)
	timeout := spec.ReadyTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	var why error
	select {
	case <-ready.seen:
		go a.feed()
		return a, nil
	case <-a.done:
		why = fmt.Errorf("the exec ended first: %w", a.execErrOr("status 0"))
	case <-t.C:
		why = fmt.Errorf("the script did not start within %s", timeout)
	case <-ctx.Done():
		why = context.Cause(ctx)
	}
	a.Disarm()
	return nil, fmt.Errorf("arm post-hook in %s: %w: %w", a.where, ErrNotArmed, why)
}

func (a *Arm) execErrOr(fallback string) error {
	if a.execErr != nil {
		return a.execErr
	}
	return errors.New(fallback)
}

func (a *Arm) run(ctx context.Context, ex Executor, req podexec.Request, stdin *io.PipeReader) {
	res, err := ex.Exec(ctx, req)
	// Nothing reads stdin any more: make writes fail instead of waiting.
	stdin.Close()
	res.Stderr = trimReady(res.Stderr)
	var exitErr *podexec.ExitError
	if errors.As(err, &exitErr) && exitErr.Stderr == ReadyLine {
		// The command printed nothing on stderr: its last line is ours.
		exitErr.Stderr = podexec.LastLine(res.Stderr)
	}
	a.res, a.execErr = res, err
	a.mu.Lock()
	if !a.settled {
		a.endErr = fmt.Errorf("%w in %s: %w", ErrLost, a.where, a.execErrOr("the exec ended with status 0"))
		close(a.lost)
	}
	a.mu.Unlock()
	a.cancel(errors.New("armed exec ended"))
	close(a.done)
}

// feed writes the latest fire limit until the exec ends.
func (a *Arm) feed() {
	for {
		select {
		case <-a.done:
			return
		case limit := <-a.limits:
			// A failed write means the exec ended or stdin was closed:
			// either way no limit matters any more.
			_ = a.write(UntilPrefix + strconv.FormatInt(limit, 10) + "\n")
		}
	}
}

func (a *Arm) write(s string) error {
	a.writing.Lock()
	defer a.writing.Unlock()
	_, err := io.WriteString(a.stdin, s)
	return err
}

// Extend moves the fire limit to fireUntil (unix milliseconds). It never waits:
// only the latest limit not yet written is kept.
func (a *Arm) Extend(fireUntil int64) {
	for {
		select {
		case a.limits <- fireUntil:
			return
		default:
		}
		select {
		case <-a.limits: // drop the older limit
		default:
		}
	}
}

// Lost is closed when the exec ended before Resume or Disarm; Err says how.
func (a *Arm) Lost() <-chan struct{} { return a.lost }

// Err returns why the arm was lost (wrapping ErrLost), or nil.
func (a *Arm) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.endErr
}

// settle marks the end as expected; false (with the loss) when the exec had
// already ended, or the arm was already resumed or disarmed.
func (a *Arm) settle() (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.endErr != nil {
		return false, a.endErr
	}
	if a.settled {
		return false, nil
	}
	a.settled = true
	return true, nil
}

// Resume runs the post-hook: it writes "resume", closes stdin and waits for
// the command to exit, returning its output and status as an ordinary exec
// would. If ctx ends first the stream is closed, and the error wraps ctx's
// cause. ErrLost (nothing written) when the exec had ended before: the
// caller runs the post-hook itself.
func (a *Arm) Resume(ctx context.Context) (podexec.Result, error) {
	ok, err := a.settle()
	if !ok {
		if err == nil {
			err = fmt.Errorf("%w in %s: resumed or disarmed already", ErrLost, a.where)
		}
		return podexec.Result{}, err
	}
	go func() {
		// A failed write means the exec ended, which the wait below sees.
		if a.write(ResumeLine+"\n") == nil {
			a.stdin.Close()
		}
	}()
	select {
	case <-a.done:
	case <-ctx.Done():
		a.cancel(context.Cause(ctx))
		<-a.done
		return a.res, fmt.Errorf("armed post-hook in %s: %w", a.where, context.Cause(ctx))
	}
	return a.res, a.execErr
}

// Disarm ends the script without running the post-hook, and closes the
// stream once it did (or after a grace period). It returns at once.
func (a *Arm) Disarm() {
	if ok, _ := a.settle(); !ok {
		return
	}
	go func() {
		if a.write(DisarmLine+"\n") == nil {
			a.stdin.Close()
		}
	}()
	go func() {
		t := time.NewTimer(stopGrace)
		defer t.Stop()
		select {
		case <-a.done:
		case <-t.C:
			a.cancel(errors.New("disarmed post-hook did not exit"))
		}
	}()
}

// Done is closed once the exec has ended.
func (a *Arm) Done() <-chan struct{} { return a.done }

// trimReady drops the script's ready line from the captured stderr, so that
// the post-hook's stderr reads as an ordinary exec's.
func trimReady(b []byte) []byte {
	return bytes.TrimPrefix(b, []byte(ReadyLine+"\n"))
}

// readyWatch is the exec's stderr until the ready line shows.
type readyWatch struct {
	mu   sync.Mutex
	buf  []byte
	seen chan struct{}
	done bool
}

func (w *readyWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	if bytes.Contains(w.buf, []byte(ReadyLine+"\n")) {
		w.done, w.buf = true, nil
		close(w.seen)
	} else if len(w.buf) > 4<<10 {
		w.buf = w.buf[len(w.buf)-len(ReadyLine)-1:]
	}
	return len(p), nil
}
