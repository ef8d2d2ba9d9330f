package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// Workloads with cheap hooks (issue 16, item 4): 500 real database servers do
// not fit on 2 cores, so most workloads of the 500-at-once benchmark are kwok
// pods whose hooks run `true` locally, each with its own claim, so that every
// backup still execs its pre- and post-hook into its pod and has a snapshot
// cut by the storage. The real Redis workloads beside them are the sample the
// writers check.

const (
	stubBlueprint   = "bench-cheap-hooks"
	stubExecProfile = "bench-stub"
	stubContainer   = "app"
	stubAppLabel    = "bench-stub"
)

// stubBlueprintYAML binds a pre- and a post-hook that exec `true` into the
// workload's pod: the cost of the exec round trips, nothing of a database.
func stubBlueprintYAML(namespace string) string {
	hook := func(name string) string {
		return fmt.Sprintf(`    - func: KubeExec
      name: %s
      args:
        namespace: '{{ .Deployment.Namespace }}'
        pod: '{{ index .Deployment.Pods 0 }}'
        container: %s
        command: ["true"]
`, name, stubContainer)
	}
	return fmt.Sprintf("apiVersion: freezeframe.io/v1alpha1\nkind: Blueprint\nmetadata: {name: %s, namespace: %s}\nactions:\n  backupPrehook:\n    phases:\n%s  backupPosthook:\n    phases:\n%s",
		stubBlueprint, namespace, hook("freeze"), hook("resume"))
}

var (
	stubsMu sync.Mutex
	stubs   = map[string][]string{} // names by namespace
)

// stubSet deploys n cheap-hook workloads (a Deployment and its claim
// <name>-data each) in namespace ns once per test binary and returns their
// names.
func stubSet(b *testing.B, ns string, n int) []string {
	b.Helper()
	stubsMu.Lock()
	defer stubsMu.Unlock()
	if names := stubs[ns]; len(names) >= n {
		return names[:n]
	}
	c := sandbox.Shared(b)
	installCRD(b)
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		b.Fatal(err)
	}
	if _, err := harness.Apply(ctx, c, stubBlueprintYAML(ns)); err != nil {
		b.Fatal(err)
	}
	// The hooks run `true` in a directory of their own.
	workDir := filepath.Join(c.StateDir, stubExecProfile)
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := c.ExecFor(ctx, stubExecProfile, stubContainer, workDir, nil); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	names := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	// Bounded: the sandbox client allows 100 requests/s, and each workload is two.
	sem := make(chan struct{}, 16)
	for i := range n {
		names[i] = fmt.Sprintf("stub-%03d", i)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = createStub(ctx, c, ns, names[i])
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	if err := waitStubsReady(ctx, c, ns, names); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d cheap-hook workloads in %s ready in %s", n, ns, time.Since(start).Round(time.Millisecond))
	stubs[ns] = names
	return names
}

// createStub creates one cheap-hook workload; one that exists already (a
// set-up cut short) is kept.
func createStub(ctx context.Context, c *sandbox.Cluster, ns, name string) error {
	claim := name + "-data"
	_, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: claim},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create claim %s/%s: %w", ns, claim, err)
	}
	selector := map[string]string{"app.kubernetes.io/name": stubAppLabel, "app.kubernetes.io/instance": name}
	labels := map[string]string{sandbox.ExecLabel: stubExecProfile}
	maps.Copy(labels, selector)
	replicas := int32(1)
	_, err = c.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: selector, Annotations: map[string]string{"freezeframe.io/blueprint": stubBlueprint}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name: stubContainer, Image: "busybox",
						VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
					}},
					Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
						PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
					}}},
				},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create deployment %s/%s: %w", ns, name, err)
	}
	return nil
}

var kwokExecs = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "execs"}

// waitStubsReady waits until every stub's claim is bound, its pod Running and
// its kwok Exec rule made, then checks that exec works into the first and the
// last pod (kwok picks the rules up by watch, in the order they come).
func waitStubsReady(ctx context.Context, c *sandbox.Cluster, ns string, names []string) error {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var pods []string
	var last string
	deadline := time.Now().Add(8 * time.Minute)
	for {
		bound, running, ruled := 0, 0, 0
		claims, err := c.Client.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, pvc := range claims.Items {
				if want[strings.TrimSuffix(pvc.Name, "-data")] && pvc.Status.Phase == corev1.ClaimBound {
					bound++
				}
			}
		}
		podList, err2 := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + stubAppLabel})
		pods = pods[:0]
		if err2 == nil {
			for _, p := range podList.Items {
				if want[p.Labels["app.kubernetes.io/instance"]] && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
					running++
					pods = append(pods, p.Name)
				}
			}
		}
		rules, err3 := c.Dynamic.Resource(kwokExecs).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err3 == nil {
			have := map[string]bool{}
			for _, r := range rules.Items {
				have[r.GetName()] = true
			}
			for _, p := range pods {
				if have[p] {
					ruled++
				}
			}
		}
		if bound == len(names) && running == len(names) && ruled == len(names) {
			break
		}
		last = fmt.Sprintf("%d of %d claims bound, %d pods running, %d exec rules (errors: %v)", bound, len(names), running, ruled, errors.Join(err, err2, err3))
		if time.Now().After(deadline) {
			return fmt.Errorf("cheap-hook workloads in %s not ready: %s", ns, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cheap-hook workloads in %s not ready: %s: %w", ns, last, ctx.Err())
		case <-time.After(time.Second):
		}
	}
	for _, p := range []string{pods[0], pods[len(pods)-1]} {
		if err := c.WaitExec(ctx, ns, p, stubContainer); err != nil {
			return err
		}
	}
	return nil
}
