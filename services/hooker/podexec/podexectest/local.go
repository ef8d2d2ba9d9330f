//go:build unix

package podexectest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"

	"github.com/freezeframe/freezeframe/services/hooker/podexec"
)

// Local runs Request.Command as a local process with stdin, stdout and
// stderr wired, and kills it when the context ends. Like a pod exec,
// closing the stream (here: the process holding it dying) closes the
// command's stdin but does not kill it.
type Local struct {
	// Started, if set, receives each command once started.
	Started chan *LocalProc
}

// LocalProc is a command Local started.
type LocalProc struct {
	Cmd *exec.Cmd
	// Stdin is the command's stdin; closing it is what a closed exec stream
	// does to the command.
	Stdin io.WriteCloser
}

// Exec runs the command and waits for it, reporting its exit as a pod exec
// would (128+N for a signal).
func (e *Local) Exec(ctx context.Context, r podexec.Request) (podexec.Result, error) {
	cmd := exec.CommandContext(ctx, r.Command[0], r.Command[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = tee(&stdout, r.Stdout), tee(&stderr, r.Stderr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return podexec.Result{}, fmt.Errorf("pipe stdin: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return podexec.Result{}, fmt.Errorf("start command: %w", err)
	}
	go func() {
		if r.Stdin != nil {
			// Ends at EOF, or when the command is gone (Wait closes the pipe).
			_, _ = io.Copy(stdin, r.Stdin)
		}
		stdin.Close()
	}()
	if e.Started != nil {
		e.Started <- &LocalProc{Cmd: cmd, Stdin: stdin}
	}
	err = cmd.Wait()
	res := podexec.Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("exec: %w", context.Cause(ctx))
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitCode()
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.ExitCode = 128 + int(ws.Signal()) // as a container runtime reports it
		}
		return res, &podexec.ExitError{Code: res.ExitCode, Stderr: podexec.LastLine(res.Stderr)}
	case err != nil:
		return res, fmt.Errorf("exec: %w", err)
	}
	return res, nil
}

func tee(buf *bytes.Buffer, w io.Writer) io.Writer {
	if w == nil {
		return buf
	}
	return io.MultiWriter(buf, w)
}
