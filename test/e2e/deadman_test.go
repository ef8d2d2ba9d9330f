package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/test/sandbox"
)

// The premise of the dead man's switch: when the process holding an exec stream is
// killed, the command in the pod sees end-of-file on its stdin at once (here through the
// real apiserver and kwok, whose exec runs a local process).
func TestDeadmanKilledExecClientEndsStdin(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	db, err := c.StartRedis(t.Context(), sandbox.DatabaseOptions{Namespace: "deadman-eof", Name: "cache"})
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "eof")
	stdin, feed, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Close()
	client := exec.Command("kubectl", "--kubeconfig", c.Kubeconfig, "exec", "-i", "-n", db.Namespace, db.Pod, "-c", db.Container, "--",
		"sh", "-c", `echo ready; cat >/dev/null; date +%s%N > "$1"`, "probe", marker)
	client.Stdin = stdin
	out, err := client.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	// Wait until the command runs in the pod.
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("exec did not start: %q %v", buf, err)
	}
	killed := time.Now()
	if err := client.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = client.Wait()
	waitFor(t, 30*time.Second, "the command in the pod sees EOF on stdin", func() (bool, error) {
		_, err := os.Stat(marker)
		return err == nil, nil
	})
	t.Logf("stdin ended in the pod %s after the exec client was killed", time.Since(killed).Round(time.Millisecond))
}
