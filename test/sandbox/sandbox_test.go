package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/freezeframe/freezeframe/test/sandbox"
)

func TestMain(m *testing.M) { sandbox.Main(m, sandbox.Options{}) }

// poll calls cond until it returns true or the deadline passes; the last error explains.
func poll(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %v (last error: %v)", what, timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func TestClusterIsUp(t *testing.T) {
	c := sandbox.Shared(t)
	v, err := c.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v1.34.4" {
		t.Errorf("server version %q, want v1.34.4 (stamped by build.sh)", v.GitVersion)
	}
	node, err := c.Client.CoreV1().Nodes().Get(t.Context(), sandbox.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !nodeReady(node) {
		t.Errorf("node %s not Ready: %+v", node.Name, node.Status.Conditions)
	}
	for _, crd := range []string{
		"volumesnapshots.snapshot.storage.k8s.io",
		"volumegroupsnapshots.groupsnapshot.storage.k8s.io",
		"execs.kwok.x-k8s.io",
	} {
		if _, err := c.Kubectl(t.Context(), "get", "crd", crd); err != nil {
			t.Errorf("CRD %s: %v", crd, err)
		}
	}
	out, err := c.Kubectl(t.Context(), "get", "storageclass,volumesnapshotclass")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(out), "(default)") != 1 || !strings.Contains(string(out), sandbox.SnapshotClassName) {
		t.Errorf("kubectl get storageclass,volumesnapshotclass:\n%s", out)
	}
	groupClass, err := c.Snapshots.GroupsnapshotV1().VolumeGroupSnapshotClasses().Get(t.Context(), sandbox.GroupSnapshotClassName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if groupClass.Driver != sandbox.DriverName || groupClass.Annotations["groupsnapshot.storage.kubernetes.io/is-default-class"] != "true" {
		t.Errorf("VolumeGroupSnapshotClass %s: driver %s, annotations %v; want the default for %s",
			groupClass.Name, groupClass.Driver, groupClass.Annotations, sandbox.DriverName)
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func TestDeploymentPodRuns(t *testing.T) {
	c := sandbox.Shared(t)
	ctx := t.Context()
	ns := "pods"
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// An exec profile for the pods: their commands run here, in dir, with FOO set.
	dir := t.TempDir()
	if err := c.ExecFor(ctx, "web", "web", dir, map[string]string{"FOO": "bar"}); err != nil {
		t.Fatal(err)
	}
	replicas := int32(1)
	labels := map[string]string{"app": "web", sandbox.ExecLabel: "web"}
	_, err := c.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pod string
	poll(t, 60*time.Second, "pod of deployment web Running", func(ctx context.Context) (bool, error) {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil || len(pods.Items) == 0 {
			return false, err
		}
		p := pods.Items[0]
		if p.Spec.NodeName != sandbox.NodeName {
			return false, fmt.Errorf("pod %s on node %q", p.Name, p.Spec.NodeName)
		}
		pod = p.Name
		return p.Status.Phase == corev1.PodRunning, fmt.Errorf("pod %s is %s", p.Name, p.Status.Phase)
	})
	if err := c.WaitExec(ctx, ns, pod, "web"); err != nil {
		t.Fatal(err)
	}
	out, err := c.Kubectl(ctx, "exec", "-n", ns, pod, "-c", "web", "--", "sh", "-c", "echo $FOO; pwd")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(out)); len(got) != 2 || got[0] != "bar" || got[1] != dir {
		t.Errorf("exec output %q, want bar and %s", out, dir)
	}
}

func TestVolumeSnapshot(t *testing.T) {
	c := sandbox.Shared(t)
	ctx := t.Context()
	ns := "snapshots"
	vol, err := c.CreateVolume(ctx, ns, "data", "1Gi")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFile(vol.Path, "hello.txt", "written before the snapshot"); err != nil {
		t.Fatal(err)
	}
	// A class whose snapshots take a few seconds to turn ready, as a cloud upload would.
	slow := "sandbox-slow"
	_, err = c.Snapshots.SnapshotV1().VolumeSnapshotClasses().Create(ctx, &snapshotv1.VolumeSnapshotClass{
		ObjectMeta:     metav1.ObjectMeta{Name: slow},
		Driver:         sandbox.DriverName,
		DeletionPolicy: snapshotv1.VolumeSnapshotContentDelete,
		Parameters:     map[string]string{"readyDelay": "4s"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvc := vol.PVC
	_, err = c.Snapshots.SnapshotV1().VolumeSnapshots(ns).Create(ctx, &snapshotv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: "snap"},
		Spec: snapshotv1.VolumeSnapshotSpec{
			Source:                  snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc},
			VolumeSnapshotClassName: &slow,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var created time.Time
	poll(t, 60*time.Second, "snapshot creationTime", func(ctx context.Context) (bool, error) {
		vs, err := c.Snapshots.SnapshotV1().VolumeSnapshots(ns).Get(ctx, "snap", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if vs.Status == nil || vs.Status.CreationTime == nil {
			return false, fmt.Errorf("status %+v", vs.Status)
		}
		if vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse {
			return false, fmt.Errorf("readyToUse before its delay passed")
		}
		created = vs.Status.CreationTime.Time
		return true, nil
	})
	// The copy was cut when creationTime was set: later writes must not be in it.
	if err := writeFile(vol.Path, "hello.txt", "written after the snapshot"); err != nil {
		t.Fatal(err)
	}
	poll(t, 90*time.Second, "snapshot readyToUse", func(ctx context.Context) (bool, error) {
		vs, err := c.Snapshots.SnapshotV1().VolumeSnapshots(ns).Get(ctx, "snap", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if vs.Status.Error != nil && vs.Status.Error.Message != nil {
			return false, fmt.Errorf("snapshot error: %s", *vs.Status.Error.Message)
		}
		return vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse, nil
	})
	t.Logf("snapshot created %s, ready %s later", created.Format(time.RFC3339), time.Since(created).Round(time.Second))

	path, err := c.SnapshotPath(ctx, ns, "snap")
	if err != nil {
		t.Fatal(err)
	}
	got, err := readFile(path, "hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got != "written before the snapshot" {
		t.Errorf("snapshot content %q, want the content at snapshot time", got)
	}

	// Restore the Kubernetes way: a claim with the snapshot as its dataSource, provisioned
	// by csi-provisioner.
	apiGroup := "snapshot.storage.k8s.io"
	_, err = c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "restored"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			DataSource:  &corev1.TypedLocalObjectReference{APIGroup: &apiGroup, Kind: "VolumeSnapshot", Name: "snap"},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var restored *sandbox.Volume
	poll(t, 60*time.Second, "restored claim bound", func(ctx context.Context) (bool, error) {
		restored, err = c.ClaimVolume(ctx, ns, "restored")
		return err == nil, err
	})
	got, err = readFile(restored.Path, "hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got != "written before the snapshot" {
		t.Errorf("restored claim content %q, want the content at snapshot time", got)
	}
}

func writeFile(dir, name, content string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
}

func readFile(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	return string(b), err
}
