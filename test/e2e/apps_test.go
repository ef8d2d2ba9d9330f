package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/freezeframe/freezeframe/test/e2e/demo"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// redisApp is a Redis Deployment as a user deploys it (Secret, PVCs, Deployment bound to
// a blueprint by annotation, the blueprint), with the sandbox's annotations that put a
// real redis-server behind its pod.
type redisApp struct {
	Namespace, Name, Blueprint string
	// FailingHooks makes the blueprint's pre-hook fail once writes are paused.
	FailingHooks bool
	// ExtraClaims are more PVCs the pod mounts besides <Name>-data (which holds Redis's
	// data), named <Name>-<claim>.
	ExtraClaims []string
	// ExistingClaims are PVCs the pod mounts that the test made itself (full names).
	ExistingClaims []string
	// Annotations are more annotations on the Deployment (snapshot class, retention).
	Annotations map[string]string
	Password    string
	// Server is the redis-server behind the pod, once deployed.
	Server *sandbox.Server
	Pod    string
}

func (a *redisApp) claim(suffix string) string { return a.Name + "-" + suffix }

func (a *redisApp) manifests() string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n---\n", a.Namespace)
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Secret\nmetadata: {name: %s-credentials, namespace: %s}\nstringData: {password: %s}\n",
		a.Name, a.Namespace, a.Password)
	var mounts, volumes strings.Builder
	for _, suffix := range append([]string{"data"}, a.ExtraClaims...) {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %s, namespace: %s}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
`, a.claim(suffix), a.Namespace)
		fmt.Fprintf(&mounts, "        - {name: %s, mountPath: /%s}\n", suffix, suffix)
		fmt.Fprintf(&volumes, "      - name: %s\n        persistentVolumeClaim: {claimName: %s}\n", suffix, a.claim(suffix))
	}
	for _, name := range a.ExistingClaims {
		fmt.Fprintf(&mounts, "        - {name: %s, mountPath: /%s}\n", name, name)
		fmt.Fprintf(&volumes, "      - name: %s\n        persistentVolumeClaim: {claimName: %s}\n", name, name)
	}
	annotations := fmt.Sprintf("freezeframe.io/blueprint: %s", a.Blueprint)
	for _, k := range slices.Sorted(maps.Keys(a.Annotations)) {
		annotations += fmt.Sprintf(", %s: %q", k, a.Annotations[k])
	}
	fmt.Fprintf(&b, `---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  namespace: %[2]s
  annotations: {%[3]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata:
      labels: {app: %[1]s}
      annotations:
        sandbox.freezeframe.dev/database: redis
        sandbox.freezeframe.dev/password-secret: %[1]s-credentials/password
        sandbox.freezeframe.dev/volume: data
        sandbox.freezeframe.dev/container: redis
    spec:
      containers:
      - name: redis
        image: redis:7
        volumeMounts:
%[4]s      volumes:
%[5]s`, a.Name, a.Namespace, annotations, mounts.String(), volumes.String())
	return b.String()
}

// deploy applies the application and its blueprint, and waits until its pod runs and its
// server answers.
func (a *redisApp) deploy(t *testing.T) {
	t.Helper()
	c := sandbox.Shared(t)
	applyBlueprint(t, a.Namespace, redisBlueprint(a.Namespace, a.Blueprint, a.FailingHooks))
	if a.Password == "" {
		a.Password = randomHex(8)
	}
	// Objects in a namespace created a moment ago can be refused (NotFound) until the
	// API server's admission has seen it: create it first.
	if err := c.EnsureNamespace(t.Context(), a.Namespace); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.Apply(t.Context(), c, a.manifests()); err != nil {
		t.Fatal(err)
	}
	a.Pod = waitPodRunning(t, a.Namespace, "app="+a.Name)
	srv, _, err := c.DatabaseFor(t.Context(), a.Namespace, a.claim("data"))
	if err != nil {
		t.Fatal(err)
	}
	a.Server = srv
	if err := c.WaitExec(t.Context(), a.Namespace, a.Pod, "redis"); err != nil {
		t.Fatal(err)
	}
}

func waitPodRunning(t testing.TB, ns, selector string) string {
	t.Helper()
	c := sandbox.Shared(t)
	var pod string
	waitFor(t, 90*time.Second, "pod "+selector+" in "+ns+" Running", func() (bool, error) {
		pods, err := c.Client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				pod = p.Name
				return true, nil
			}
		}
		return false, nil
	})
	return pod
}

// redisBlueprint is the demo's Blueprint for the test apps' Secrets.
// failAfterPause adds a pre-hook phase that fails once writes are paused:
// the post-hook must still undo the pause.
func redisBlueprint(ns, name string, failAfterPause bool) string {
	extra := ""
	if failAfterPause {
		extra = `    - func: KubeExec
      name: checkReplication
      args:
        namespace: '{{ .Deployment.Namespace }}'
        pod: '{{ index .Deployment.Pods 0 }}'
        container: redis
        command: [sh, -c, 'echo "replica lag too high (simulated)" >&2; exit 3']
`
	}
	return demo.RedisBlueprint{Namespace: ns, Name: name, Secret: "{{ .Deployment.Name }}-credentials", Key: "password", ExtraPrehook: extra}.YAML()
}

// mariadbBlueprint is the README's MariaDB blueprint: FLUSH TABLES WITH READ LOCK held by
// a KubeExecSession from the pre-hook until the resume.
func mariadbBlueprint(ns string) string {
	return fmt.Sprintf(`apiVersion: freezeframe.io/v1alpha1
kind: Blueprint
metadata: {name: mariadb-hooks, namespace: %s}
actions:
  backupPrehook:
    phases:
    - func: KubeExecSession
      name: lockTables
      args:
        namespace: "{{ .StatefulSet.Namespace }}"
        pod: "{{ index .StatefulSet.Pods 0 }}"
        container: mariadb
        command: [sh, -c, 'exec mariadb -uroot -p"$MARIADB_ROOT_PASSWORD" -N --unbuffered']
        stdin: |
          FLUSH TABLES WITH READ LOCK;
          SELECT 'FREEZEFRAME-LOCKED';
        readyPattern: "(?m)^FREEZEFRAME-LOCKED$"
        releaseInput: |
          UNLOCK TABLES;
        timeout: 30s
`, ns)
}

func applyBlueprint(t testing.TB, ns, manifest string) {
	t.Helper()
	installCRD(t)
	if err := sandbox.Shared(t).EnsureNamespace(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.Apply(t.Context(), sandbox.Shared(t), manifest); err != nil {
		t.Fatal(err)
	}
}

// writeMarker writes a random marker into one of the app's extra claims and returns it,
// to find in that claim's snapshot.
func (a *redisApp) writeMarker(t *testing.T, suffix string) string {
	t.Helper()
	vol, err := sandbox.Shared(t).ClaimVolume(t.Context(), a.Namespace, a.claim(suffix))
	if err != nil {
		t.Fatal(err)
	}
	marker := suffix + " " + randomHex(4)
	if err := os.WriteFile(filepath.Join(vol.Path, "marker"), []byte(marker), 0o644); err != nil {
		t.Fatal(err)
	}
	return marker
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// snapshotDir waits until VolumeSnapshot ns/name is bound to its content and returns the
// directory holding the copy.
func snapshotDir(t *testing.T, ns, name string) string {
	t.Helper()
	c := sandbox.Shared(t)
	var dir string
	waitFor(t, 30*time.Second, "content of snapshot "+ns+"/"+name, func() (bool, error) {
		var err error
		dir, err = c.SnapshotPath(t.Context(), ns, name)
		return err == nil, err
	})
	return dir
}

// ctxTimeout is t.Context() bounded by d.
func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
