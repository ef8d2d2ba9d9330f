package sandbox_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/freezeframe/freezeframe/test/sandbox"
)

func TestRedisBehindPod(t *testing.T) {
	c := sandbox.Shared(t)
	ctx := t.Context()
	db, err := c.StartRedis(ctx, sandbox.DatabaseOptions{
		Namespace:   "redis",
		Name:        "cache",
		Password:    "s3cret",
		Annotations: map[string]string{"freezeframe.dev/blueprint": "redis"},
	})
	if err != nil {
		t.Fatal(err)
	}
	dep, err := c.Client.AppsV1().Deployments("redis").Get(ctx, "cache", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Annotations["freezeframe.dev/blueprint"] != "redis" {
		t.Errorf("deployment annotations %v", dep.Annotations)
	}

	// A hook as a Blueprint would run it: plain redis-cli, no flags.
	out, err := c.Kubectl(ctx, "exec", "-n", "redis", db.Pod, "-c", db.Container, "--", "redis-cli", "SET", "greeting", "hello")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(out)) != "OK" {
		t.Fatalf("redis-cli SET in pod: %q", out)
	}
	// The value is in the real server, seen from outside the pod.
	got, err := runClient(t, db.Server, "redis-cli", "-p", strconv.Itoa(db.Port), "GET", "greeting")
	if err != nil || got != "hello" {
		t.Fatalf("GET from the host: %q, %v", got, err)
	}
	// stdin goes through kubectl exec -i, and its end reaches the command (build.sh
	// patches kwok for that): redis-cli reads to EOF, then exits.
	out, err = c.KubectlStdin(ctx, strings.NewReader("INCR counter\nINCR counter\n"),
		"exec", "-i", "-n", "redis", db.Pod, "-c", db.Container, "--", "redis-cli")
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(out)); len(f) != 2 || f[1] != "2" {
		t.Fatalf("redis-cli over stdin: %q", out)
	}
	// The data lives in the volume's directory.
	if !strings.HasPrefix(db.DataDir, db.Volume.Path) {
		t.Errorf("data dir %s not inside volume %s", db.DataDir, db.Volume.Path)
	}
	// A failing command's exit status comes back.
	if _, err := c.Kubectl(ctx, "exec", "-n", "redis", db.Pod, "-c", db.Container, "--", "sh", "-c", "exit 3"); err == nil || !strings.Contains(err.Error(), "3") {
		t.Errorf("exit 3 in pod gave %v", err)
	}
}

func TestMariaDBBehindPod(t *testing.T) {
	c := sandbox.Shared(t)
	ctx := t.Context()
	db, err := c.StartMariaDB(ctx, sandbox.DatabaseOptions{Namespace: "mariadb", Name: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	script := "CREATE DATABASE app; CREATE TABLE app.t (v INT); INSERT INTO app.t VALUES (7);\n" +
		"FLUSH TABLES WITH READ LOCK; SELECT COUNT(*) FROM app.t; UNLOCK TABLES;\n"
	out, err := c.KubectlStdin(ctx, strings.NewReader(script),
		"exec", "-i", "-n", "mariadb", db.Pod, "-c", db.Container, "--", "mariadb", "-N")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("mariadb in pod: %q", out)
	}
	got, err := runClient(t, db.Server, "mariadb", "-N", "-e", "SELECT v FROM app.t")
	if err != nil || got != "7" {
		t.Fatalf("select from the host: %q, %v", got, err)
	}
}

func TestPostgresBehindPod(t *testing.T) {
	c := sandbox.Shared(t)
	ctx := t.Context()
	db, err := c.StartPostgres(ctx, sandbox.DatabaseOptions{Namespace: "postgres", Name: "ledger"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Kubectl(ctx, "exec", "-n", "postgres", db.Pod, "-c", db.Container, "--",
		"psql", "-XAtc", "CREATE TABLE t (v int); INSERT INTO t VALUES (42); SELECT v FROM t")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(strings.TrimSpace(string(out)), "42") {
		t.Fatalf("psql in pod: %q", out)
	}
}

// runClient runs a database client on the host with the server's environment.
func runClient(t *testing.T, s *sandbox.Server, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Env = os.Environ()
	for k, v := range s.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// The flow the demo relies on: snapshot a live Redis volume, restore the snapshot into a
// new volume, start a fresh server on it, and find exactly the data written before.
func TestRedisSnapshotRestores(t *testing.T) {
	c := sandbox.Shared(t)
	ctx := t.Context()
	ns := "restore"
	db, err := c.StartRedis(ctx, sandbox.DatabaseOptions{Namespace: ns, Name: "cache", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kubectl(ctx, "exec", "-n", ns, db.Pod, "-c", db.Container, "--", "sh", "-c",
		`seq 1 100 | while read i; do echo "SET key:$i $i"; done | redis-cli >/dev/null`); err != nil {
		t.Fatal(err)
	}
	pvc := db.Volume.PVC
	_, err = c.Snapshots.SnapshotV1().VolumeSnapshots(ns).Create(ctx, &snapshotv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: "cache-snap"},
		Spec:       snapshotv1.VolumeSnapshotSpec{Source: snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, 90*time.Second, "snapshot readyToUse", func(ctx context.Context) (bool, error) {
		vs, err := c.Snapshots.SnapshotV1().VolumeSnapshots(ns).Get(ctx, "cache-snap", metav1.GetOptions{})
		if err != nil || vs.Status == nil {
			return false, err
		}
		return vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse, nil
	})
	if got, err := runClient(t, db.Server, "redis-cli", "-p", strconv.Itoa(db.Port), "SET", "key:late", "x"); err != nil || got != "OK" {
		t.Fatalf("SET after snapshot: %q, %v", got, err)
	}

	vol, err := c.RestoreVolume(ctx, ns, "cache-snap", ns, "cache-restored")
	if err != nil {
		t.Fatal(err)
	}
	restored, err := c.RunServer(ctx, sandbox.Redis, filepath.Join(vol.Path, sandbox.Redis), "pw")
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Stop()
	got, err := runClient(t, restored, "redis-cli", "-p", strconv.Itoa(restored.Port), "DBSIZE")
	if err != nil || got != "100" {
		t.Fatalf("restored DBSIZE %q, %v; want 100", got, err)
	}
}

// A session-held lock, as a FLUSH TABLES WITH READ LOCK hook holds it: the lock lasts
// while the `kubectl exec -i` session is open, blocks writers from other sessions, and
// goes when the client closes the session.
func TestMariaDBSessionHeldLock(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(cmd *exec.Cmd, stdin io.Closer) error
	}{
		{"stdin closed", func(_ *exec.Cmd, stdin io.Closer) error { return stdin.Close() }},
		// A hooker that crashes must not leave the database locked.
		{"client killed", func(cmd *exec.Cmd, _ io.Closer) error { return cmd.Process.Kill() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testSessionHeldLock(t, "lock-"+strings.ReplaceAll(tc.name, " ", "-"), tc.end)
		})
	}
}

func testSessionHeldLock(t *testing.T, ns string, end func(*exec.Cmd, io.Closer) error) {
	c := sandbox.Shared(t)
	ctx := t.Context()
	db, err := c.StartMariaDB(ctx, sandbox.DatabaseOptions{Namespace: ns, Name: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runClient(t, db.Server, "mariadb", "-e", "CREATE DATABASE app; CREATE TABLE app.t (v INT)"); err != nil {
		t.Fatal(err)
	}

	// The hook's session: lock, say so, then wait with stdin open. --unbuffered, or the
	// client keeps "locked" in its buffer until it exits.
	var stdout lockedBuffer
	cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", c.Kubeconfig, "exec", "-i", "-n", ns, db.Pod,
		"-c", db.Container, "--", "mariadb", "-N", "--unbuffered")
	cmd.Stdout = &stdout
	// A pipe, not an io.Reader: Wait would wait for a copier blocked on the reader.
	stdinW, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sessionDone := make(chan error, 1)
	go func() { sessionDone <- cmd.Wait() }()
	if _, err := io.WriteString(stdinW, "FLUSH TABLES WITH READ LOCK; SELECT 'locked';\n"); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "lock taken", func(context.Context) (bool, error) {
		return strings.Contains(stdout.String(), "locked"), nil
	})

	// A writer from another session waits for the lock.
	insertDone := make(chan error, 1)
	go func() {
		_, err := runClient(t, db.Server, "mariadb", "-e", "INSERT INTO app.t VALUES (1)")
		insertDone <- err
	}()
	select {
	case err := <-insertDone:
		t.Fatalf("INSERT finished while the lock was held: %v", err)
	case <-time.After(2 * time.Second):
	}

	// Ending the session ends the client in the pod, which releases the lock.
	if err := end(cmd, stdinW); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sessionDone:
	case <-time.After(30 * time.Second):
		t.Fatal("kubectl exec did not end")
	}
	select {
	case err := <-insertDone:
		if err != nil {
			t.Fatalf("INSERT after unlock: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("INSERT still blocked after the session ended")
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The Deployment's replacement pod gets the exec rule too.
func TestExecFollowsReplacementPod(t *testing.T) {
	c := sandbox.Shared(t)
	ctx := t.Context()
	ns := "replace"
	db, err := c.StartRedis(ctx, sandbox.DatabaseOptions{Namespace: ns, Name: "cache"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, db.Pod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod string
	poll(t, 60*time.Second, "replacement pod Running", func(ctx context.Context) (bool, error) {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=cache"})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.Name != db.Pod && p.Status.Phase == "Running" {
				pod = p.Name
				return true, nil
			}
		}
		return false, nil
	})
	if err := c.WaitExec(ctx, ns, pod, db.Container); err != nil {
		t.Fatal(err)
	}
	out, err := c.Kubectl(ctx, "exec", "-n", ns, pod, "-c", db.Container, "--", "redis-cli", "PING")
	if err != nil || strings.TrimSpace(string(out)) != "PONG" {
		t.Fatalf("redis-cli PING in the replacement pod: %q, %v", out, err)
	}
}

// A person's flow: plain manifests applied with kubectl get a real server behind the pod.
func TestDatabaseFromManifests(t *testing.T) {
	c := sandbox.Shared(t)
	ctx := t.Context()
	if err := c.EnsureNamespace(ctx, "manifests"); err != nil {
		t.Fatal(err)
	}
	// The Deployment comes before its Secret: the sandbox retries until it can start.
	manifests := `
apiVersion: apps/v1
kind: Deployment
metadata: {name: kv, namespace: manifests}
spec:
  selector: {matchLabels: {app: kv}}
  template:
    metadata:
      labels: {app: kv}
      annotations:
        sandbox.freezeframe.dev/database: redis
        sandbox.freezeframe.dev/password-secret: kv/password
    spec:
      containers: [{name: redis, image: redis:7}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: kv-data}}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: kv-data, namespace: manifests}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Secret
metadata: {name: kv, namespace: manifests}
stringData: {password: hunter2}
`
	if _, err := c.KubectlStdin(ctx, strings.NewReader(manifests), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	srv, vol, err := c.DatabaseFor(ctx, "manifests", "kv-data")
	if err != nil {
		t.Fatal(err)
	}
	if srv.Password != "hunter2" || !strings.HasPrefix(srv.DataDir, vol.Path) {
		t.Errorf("server %+v on volume %+v", srv, vol)
	}
	var pod string
	poll(t, 30*time.Second, "exec into the kv pod", func(ctx context.Context) (bool, error) {
		out, err := c.Kubectl(ctx, "get", "pods", "-n", "manifests", "-l", "app=kv", "-o", "jsonpath={.items[0].metadata.name}")
		if err != nil {
			return false, err
		}
		pod = string(out)
		out, err = c.Kubectl(ctx, "exec", "-n", "manifests", pod, "--", "redis-cli", "PING")
		return err == nil && strings.TrimSpace(string(out)) == "PONG", err
	})
}

// PostgreSQL in a StatefulSet, with a session held through `kubectl exec -i`:
// pg_backup_start in it, pg_backup_stop in the same session later (session state lives as
// long as the exec stream; docs/blueprints.md's postgres-hooks holds its locks the same way).
func TestPostgresStatefulSetBackupMode(t *testing.T) {
	c := sandbox.Shared(t)
	ctx := t.Context()
	ns := "pg-sts"
	db, err := c.StartPostgres(ctx, sandbox.DatabaseOptions{Namespace: ns, Name: "ledger", StatefulSet: true})
	if err != nil {
		t.Fatal(err)
	}
	if db.Pod != "ledger-0" || db.Volume.PVC != "data-ledger-0" {
		t.Fatalf("pod %s, claim %s: want ledger-0, data-ledger-0", db.Pod, db.Volume.PVC)
	}
	var stdout lockedBuffer
	cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", c.Kubeconfig, "exec", "-i", "-n", ns, db.Pod,
		"-c", db.Container, "--", "sh", "-c", "exec psql -U postgres -X -A -t -v ON_ERROR_STOP=1")
	cmd.Stdout = &stdout
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdin, "SELECT 'FREEZEFRAME-' || pg_backup_start('freezeframe', true);\n"); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "backup mode started", func(context.Context) (bool, error) {
		return strings.Contains(stdout.String(), "FREEZEFRAME-"), nil
	})
	if _, err := io.WriteString(stdin, "SELECT lsn FROM pg_backup_stop();\n"); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("psql session: %v (output %q)", err, stdout.String())
	}
	if lines := strings.Split(strings.TrimSpace(stdout.String()), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "/") {
		t.Errorf("session output %q: want the start line and the stop LSN", stdout.String())
	}
}
