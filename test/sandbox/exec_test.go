package sandbox_test

import (
	"bytes"
	"net/url"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/freezeframe/freezeframe/test/sandbox"
)

// Services exec into pods with client-go, not kubectl: both transports reach kwok, with
// stdin, output and the exit status.
func TestClientGoExec(t *testing.T) {
	c := sandbox.Shared(t)
	ctx := t.Context()
	db, err := c.StartRedis(ctx, sandbox.DatabaseOptions{Namespace: "clientgo", Name: "cache"})
	if err != nil {
		t.Fatal(err)
	}
	execURL := func(cmd []string, stdin bool) *url.URL {
		opts := &corev1.PodExecOptions{Container: db.Container, Command: cmd, Stdin: stdin, Stdout: true, Stderr: true}
		return c.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(db.Namespace).Name(db.Pod).
			SubResource("exec").VersionedParams(opts, scheme.ParameterCodec).URL()
	}
	newExecutor := map[string]func(cmd []string, stdin bool) (remotecommand.Executor, error){
		"spdy": func(cmd []string, stdin bool) (remotecommand.Executor, error) {
			return remotecommand.NewSPDYExecutor(c.Config, "POST", execURL(cmd, stdin))
		},
		"websocket": func(cmd []string, stdin bool) (remotecommand.Executor, error) {
			return remotecommand.NewWebSocketExecutor(c.Config, "GET", execURL(cmd, stdin).String())
		},
	}
	for name, newExec := range newExecutor {
		t.Run(name, func(t *testing.T) {
			exec, err := newExec([]string{"redis-cli"}, true)
			if err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			err = exec.StreamWithContext(ctx, remotecommand.StreamOptions{
				Stdin:  strings.NewReader("SET via " + name + "\nGET via\n"),
				Stdout: &stdout, Stderr: &stderr,
			})
			if err != nil {
				t.Fatalf("stream: %v (stderr %q)", err, stderr.String())
			}
			if got := strings.Fields(stdout.String()); len(got) != 2 || got[0] != "OK" || got[1] != name {
				t.Fatalf("stdout %q", stdout.String())
			}

			exec, err = newExec([]string{"sh", "-c", "echo oops >&2; exit 3"}, false)
			if err != nil {
				t.Fatal(err)
			}
			stdout.Reset()
			stderr.Reset()
			err = exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
			if err == nil || !strings.Contains(err.Error(), "3") || strings.TrimSpace(stderr.String()) != "oops" {
				t.Fatalf("exit 3: err %v, stderr %q", err, stderr.String())
			}
		})
	}
}
