// Package podexec runs a command in a pod's container through the
// Kubernetes API (the same path as kubectl exec), with a deadline.
//
// # Captured output
//
// A hook's standard output and standard error are kept in memory for the
// phase output, error messages and logs, so each is bounded: at most
// DefaultMaxOutput (64 KiB) per stream and exec, or WithMaxOutput's limit.
// Past it the first half and the last half are kept, cut at line ends,
// with a line saying how many bytes were dropped between them
// (Result.StdoutDropped, Result.StderrDropped count them). Phase output
// lines (`kando output`, usually printed last) and the last line of stderr
// (the usual error) survive; writers given in the Request still see
// everything.
package podexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
)

// Request names what to run where.
type Request struct {
	Namespace string
	Pod       string
	Container string
	Command   []string
	// Stdin, when set, is streamed to the command.
	Stdin io.Reader
	// Stdout and Stderr, when set, receive output as it comes (in addition
	// to the captured Result), for commands whose output is awaited live.
	Stdout io.Writer
	Stderr io.Writer
}

// Result is what the command printed and how it ended.
type Result struct {
	// Stdout and Stderr are the captured output, bounded (see the package
	// documentation).
	Stdout   []byte
	Stderr   []byte
	ExitCode int
	// StdoutDropped and StderrDropped count the bytes left out of Stdout
	// and Stderr between their head and their tail.
	StdoutDropped int64
	StderrDropped int64
}

// ExitError is returned when the command ran and exited non-zero.
type ExitError struct {
	Code   int
	Stderr string
}

func (e *ExitError) Error() string {
	if e.Stderr != "" {
		return fmt.Sprintf("command exited with status %d: %s", e.Code, e.Stderr)
	}
	return fmt.Sprintf("command exited with status %d", e.Code)
}

// DefaultMaxOutput bounds the captured output of each stream of an exec.
const DefaultMaxOutput = 64 << 10

// Executor runs commands in pods.
type Executor struct {
	config    *rest.Config
	client    kubernetes.Interface
	maxOutput int
}

// Option adjusts an Executor.
type Option func(*Executor)

// WithMaxOutput sets how many bytes of each stream an exec keeps (default
// DefaultMaxOutput); values below 2 KiB are raised to it, so that the last
// line of an error still fits.
func WithMaxOutput(n int) Option {
	return func(e *Executor) { e.maxOutput = max(n, minOutput) }
}

const minOutput = 2 << 10

// New returns an executor over a REST config and clientset.
func New(config *rest.Config, client kubernetes.Interface, opts ...Option) *Executor {
	e := &Executor{config: config, client: client, maxOutput: DefaultMaxOutput}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Exec runs the command until it exits or ctx ends; cancelling ctx closes
// the stream, which ends the command's session in the container.
func (e *Executor) Exec(ctx context.Context, r Request) (Result, error) {
	req := e.client.CoreV1().RESTClient().Post().
		Resource("pods").Namespace(r.Namespace).Name(r.Pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: r.Container,
			Command:   r.Command,
			Stdin:     r.Stdin != nil,
			Stdout:    true,
			Stderr:    true,
		}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(e.config, http.MethodGet, req.URL().String())
	if err != nil {
		return Result{}, fmt.Errorf("exec in %s/%s: %w", r.Namespace, r.Pod, err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(e.config, http.MethodPost, req.URL())
	if err != nil {
		return Result{}, fmt.Errorf("exec in %s/%s: %w", r.Namespace, r.Pod, err)
	}
	// WebSockets first (the current protocol), SPDY for older API servers.
	exec, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool { return true })
	if err != nil {
		return Result{}, fmt.Errorf("exec in %s/%s: %w", r.Namespace, r.Pod, err)
	}
	stdout, stderr := newCapture(e.maxOutput), newCapture(e.maxOutput)
	opts := remotecommand.StreamOptions{Stdin: r.Stdin, Stdout: teeTo(stdout, r.Stdout), Stderr: teeTo(stderr, r.Stderr)}
	err = exec.StreamWithContext(ctx, opts)
	var res Result
	res.Stdout, res.StdoutDropped = stdout.Bytes()
	res.Stderr, res.StderrDropped = stderr.Bytes()
	var exitErr utilexec.CodeExitError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.Code
		return res, &ExitError{Code: exitErr.Code, Stderr: LastLine(res.Stderr)}
	case ctx.Err() != nil:
		return res, fmt.Errorf("exec in %s/%s container %s: %w", r.Namespace, r.Pod, r.Container, context.Cause(ctx))
	default:
		return res, fmt.Errorf("exec in %s/%s container %s: %w", r.Namespace, r.Pod, r.Container, err)
	}
}

func teeTo(buf io.Writer, w io.Writer) io.Writer {
	if w == nil {
		return buf
	}
	return io.MultiWriter(buf, w)
}

// LastLine is the last non-empty line of b, at most 300 bytes of it: the
// line of a command's stderr that usually says what went wrong, short
// enough for an error message.
func LastLine(b []byte) string {
	b = bytes.TrimRight(b, "\n\r ")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	if len(b) > 300 {
		b = b[:300]
	}
	return string(b)
}
