package podexectest

import (
	"bufio"
	"context"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/freezeframe/freezeframe/services/hooker/armed"
	"github.com/freezeframe/freezeframe/services/hooker/podexec"
)

// Call is one command a Recorder ran.
type Call struct {
	Namespace, Pod, Container string
	Command                   []string
	// At is when Exec was called.
	At time.Time
}

// Recorder stands in for exec into pods: it records each command and
// succeeds at once, printing nothing, unless told to fail or block it.
// Its zero value is ready to use.
type Recorder struct {
	// Code is the exit status of a failed command; 1 when 0.
	Code int
	// Stderr is what a failed command printed; "failed" when empty.
	Stderr string

	mu        sync.Mutex
	calls     []Call
	failOn    string
	failTimes int
	failed    int
	block     string
}

// Fail makes the commands that contain substr exit with Code and Stderr,
// the first times of them (every one when times is 0).
func (r *Recorder) Fail(substr string, times int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failOn, r.failTimes, r.failed = substr, times, 0
}

// Block makes the commands that contain substr run until their context
// ends, as a hook that hangs does.
func (r *Recorder) Block(substr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.block = substr
}

// Exec records the command, then fails or blocks it as told. An armed
// post-hook (package armed) is played as the script in a pod would: it
// reports itself armed, waits on stdin, and runs its command (recorded
// then) on "resume" or at the end of stdin, or nothing on "disarm".
func (r *Recorder) Exec(ctx context.Context, req podexec.Request) (podexec.Result, error) {
	if inner, _, ok := armed.Unwrap(req.Command); ok && req.Stdin != nil {
		if !awaitResume(ctx, req) {
			return podexec.Result{}, nil
		}
		req.Command = inner
	}
	cmd := strings.Join(req.Command, " ")
	r.mu.Lock()
	r.calls = append(r.calls, Call{Namespace: req.Namespace, Pod: req.Pod, Container: req.Container, Command: req.Command, At: time.Now()})
	block := r.block != "" && strings.Contains(cmd, r.block)
	fail := !block && r.failOn != "" && strings.Contains(cmd, r.failOn) && (r.failTimes == 0 || r.failed < r.failTimes)
	if fail {
		r.failed++
	}
	code, stderr := r.Code, r.Stderr
	r.mu.Unlock()
	switch {
	case block:
		<-ctx.Done()
		return podexec.Result{}, context.Cause(ctx)
	case fail:
		if code == 0 {
			code = 1
		}
		if stderr == "" {
			stderr = "failed"
		}
		return podexec.Result{ExitCode: code, Stderr: []byte(stderr)}, &podexec.ExitError{Code: code, Stderr: stderr}
	}
	return podexec.Result{}, nil
}

// Calls returns the commands run so far, in order.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Call(nil), r.calls...)
}

// Commands returns the commands run so far, in order, each as
// "pod/container: command args".
func (r *Recorder) Commands() []string {
	var out []string
	for _, c := range r.Calls() {
		out = append(out, c.Pod+"/"+c.Container+": "+strings.Join(c.Command, " "))
	}
	return out
}

// Last returns the latest command run in namespace that contains substr.
func (r *Recorder) Last(namespace, substr string) (Call, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.calls) - 1; i >= 0; i-- {
		if c := r.calls[i]; c.Namespace == namespace && strings.Contains(strings.Join(c.Command, " "), substr) {
			return c, true
		}
	}
	return Call{}, false
}

// awaitResume plays the armed script's wait: true when the command is to
// run (resumed, or its stdin ended: the switch fires, the limit aside);
// false on "disarm" or when ctx ends (the stream was closed).
func awaitResume(ctx context.Context, req podexec.Request) bool {
	if req.Stderr != nil {
		_, _ = io.WriteString(req.Stderr, armed.ReadyLine+"\n")
	}
	run := make(chan bool, 1)
	go func() {
		lines := bufio.NewScanner(req.Stdin)
		for lines.Scan() {
			switch lines.Text() {
			case armed.ResumeLine:
				run <- true
				return
			case armed.DisarmLine:
				run <- false
				return
			}
		}
		run <- true
	}()
	select {
	case r := <-run:
		return r
	case <-ctx.Done():
		return false
	}
}
