// Package podexec runs a command in a pod's container through the
// Kubernetes API (the same path as kubectl exec), with a deadline.
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
	Stdout   []byte
	Stderr   []byte
	ExitCode int
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

// Executor runs commands in pods.
type Executor struct {
	config *rest.Config
	client kubernetes.Interface
}

// New returns an executor over a REST config and clientset.
func New(config *rest.Config, client kubernetes.Interface) *Executor {
	return &Executor{config: config, client: client}
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
	var stdout, stderr bytes.Buffer
	opts := remotecommand.StreamOptions{Stdin: r.Stdin, Stdout: teeTo(&stdout, r.Stdout), Stderr: teeTo(&stderr, r.Stderr)}
	err = exec.StreamWithContext(ctx, opts)
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var exitErr utilexec.CodeExitError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.Code
		return res, &ExitError{Code: exitErr.Code, Stderr: lastLine(res.Stderr)}
	case ctx.Err() != nil:
		return res, fmt.Errorf("exec in %s/%s container %s: %w", r.Namespace, r.Pod, r.Container, context.Cause(ctx))
	default:
		return res, fmt.Errorf("exec in %s/%s container %s: %w", r.Namespace, r.Pod, r.Container, err)
	}
}

func teeTo(buf *bytes.Buffer, w io.Writer) io.Writer {
	if w == nil {
		return buf
	}
	return io.MultiWriter(buf, w)
}

// lastLine keeps error messages short: the last non-empty line of stderr
// usually says what went wrong.
func lastLine(b []byte) string {
	b = bytes.TrimRight(b, "\n\r ")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	if len(b) > 300 {
		b = b[:300]
	}
	return string(b)
}
