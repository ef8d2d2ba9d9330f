package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	groupsnapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapshotclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/freezeframe/freezeframe/test/sandbox/csidriver"
)

func (c *Cluster) startAPIServer(ctx context.Context) error {
	pki := filepath.Join(c.StateDir, "pki")
	var err error
	if c.saKey, c.saPub, err = writeServiceAccountKey(pki); err != nil {
		return err
	}
	c.token = randomHex(16)
	tokens := filepath.Join(pki, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(c.token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	args := []string{
		"--etcd-servers", c.etcdURL,
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(port),
		"--cert-dir", filepath.Join(c.StateDir, "apiserver"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", c.saPub,
		"--service-account-signing-key-file", c.saKey,
		"--token-auth-file", tokens,
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.0.0.0/24",
		// kwok reports the node's hostname too, which does not resolve.
		"--kubelet-preferred-address-types", "InternalIP",
		"--allow-privileged",
		"--profiling=false",
	}
	c.Server = "https://127.0.0.1:" + strconv.Itoa(port)
	if err := c.runAPIServer(ctx, args); err != nil {
		return err
	}
	if err := c.writeKubeconfig(); err != nil {
		return err
	}
	c.Config = &rest.Config{
		Host:            c.Server,
		BearerToken:     c.token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             100,
		Burst:           200,
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if c.Snapshots, err = snapshotclient.NewForConfig(c.Config); err != nil {
		return fmt.Errorf("snapshot client: %w", err)
	}
	if c.Dynamic, err = dynamic.NewForConfig(c.Config); err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	return nil
}

func (c *Cluster) runAPIServer(ctx context.Context, args []string) error {
	p, err := c.run(binAPIServer, args, nil)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.apiServer, c.apiServerArgs = p, args
	c.mu.Unlock()
	return waitFor(ctx, p, 90*time.Second, "kube-apiserver /readyz", func(ctx context.Context) (bool, error) {
		return httpOK(ctx, c.Server+"/readyz", c.token)
	})
}

// RestartAPIServer SIGKILLs kube-apiserver, waits down, and starts it again
// with the same address, certificates and etcd (the cluster's state stays),
// as a crashed control-plane node would come back. It returns once /readyz
// answers, and how long the API was unreachable.
func (c *Cluster) RestartAPIServer(ctx context.Context, down time.Duration) (time.Duration, error) {
	c.mu.Lock()
	p, args := c.apiServer, c.apiServerArgs
	c.mu.Unlock()
	if p == nil {
		return 0, errors.New("restart kube-apiserver: it was never started")
	}
	killed := time.Now()
	p.Kill()
	select {
	case <-time.After(down):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if err := c.runAPIServer(ctx, args); err != nil {
		return 0, fmt.Errorf("restart kube-apiserver: %w", err)
	}
	return time.Since(killed), nil
}

func (c *Cluster) writeKubeconfig() error {
	c.Kubeconfig = filepath.Join(c.StateDir, "kubeconfig")
	// The apiserver's serving certificate is self-signed on each start; the admin token is
	// what matters on loopback.
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: sandbox
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: sandbox
  context:
    cluster: sandbox
    user: admin
    namespace: default
current-context: sandbox
`, c.Server, c.token)
	if err := os.WriteFile(c.Kubeconfig, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// controllerArgs are the flags kube-controller-manager and kube-scheduler
// share: the admin kubeconfig for everything, no leader election (one of
// each), and their secure port on loopback.
func (c *Cluster) controllerArgs(port int) []string {
	return []string{
		"--kubeconfig", c.Kubeconfig,
		"--authentication-kubeconfig", c.Kubeconfig,
		"--authorization-kubeconfig", c.Kubeconfig,
		"--leader-elect=false",
		"--bind-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(port),
	}
}

func (c *Cluster) startControllerManager(ctx context.Context) error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	p, err := c.run(binControllerManager, append(c.controllerArgs(port),
		"--service-account-private-key-file", c.saKey,
		"--root-ca-file", filepath.Join(c.StateDir, "apiserver", "apiserver.crt"),
		"--use-service-account-credentials=false",
		// Static PVs bind on the binder's resync, 15s by default: too slow for tests.
		"--pvclaimbinder-sync-period=1s",
		// The defaults (20 requests/s, burst 30) turn 500 Deployments into pods
		// over minutes: the benchmarks' 500 workloads at once need more.
		"--kube-api-qps=200", "--kube-api-burst=400",
		"--concurrent-deployment-syncs=16", "--concurrent-replicaset-syncs=16",
	), nil)
	if err != nil {
		return err
	}
	// Pods are refused until the namespace has its default ServiceAccount, which the
	// controller-manager creates: that is the readiness that matters here.
	return waitFor(ctx, p, 90*time.Second, "default ServiceAccount", func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
}

func (c *Cluster) startScheduler(ctx context.Context) error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	// 50 requests/s by default: binding 500 pods would take 10 s.
	p, err := c.run(binScheduler, append(c.controllerArgs(port), "--kube-api-qps=200", "--kube-api-burst=400"), nil)
	if err != nil {
		return err
	}
	url := "https://127.0.0.1:" + strconv.Itoa(port) + "/healthz"
	return waitFor(ctx, p, 60*time.Second, "kube-scheduler /healthz", func(ctx context.Context) (bool, error) {
		return httpOK(ctx, url, "")
	})
}

func (c *Cluster) startKwok(ctx context.Context) error {
	pki := filepath.Join(c.StateDir, "pki")
	cert, key, err := writeServingCert(pki, "kwok")
	if err != nil {
		return err
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	// An explicit, empty config keeps a user's ~/.kwok/kwok.yaml out; kwok then uses its
	// built-in fast node and pod stages.
	cfg := filepath.Join(c.StateDir, "kwok.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions: {}\n"), 0o644); err != nil {
		return fmt.Errorf("write kwok config: %w", err)
	}
	if err := writeWrappers(c.wrapperDir); err != nil {
		return err
	}
	p, err := c.run(binKwok, []string{
		"--kubeconfig", c.Kubeconfig,
		"--config", cfg,
		"--manage-all-nodes",
		"--node-ip", "127.0.0.1",
		"--node-port", strconv.Itoa(port),
		"--server-address", "127.0.0.1:" + strconv.Itoa(port),
		"--tls-cert-file", cert,
		"--tls-private-key-file", key,
		// Exec rules are objects in the cluster, so pods can get them after kwok started.
		"--enable-crds", "Exec",
	}, []string{
		// kwok looks up an exec'd command on its own PATH: the wrappers (redis-cli that
		// honours REDIS_PORT) come first.
		"PATH=" + c.wrapperDir + string(os.PathListSeparator) + os.Getenv("PATH"),
	})
	if err != nil {
		return err
	}
	url := "https://127.0.0.1:" + strconv.Itoa(port) + "/healthz"
	return waitFor(ctx, p, 60*time.Second, "kwok /healthz", func(ctx context.Context) (bool, error) {
		return httpOK(ctx, url, "")
	})
}

func (c *Cluster) startDriver(ctx context.Context, opts Options) error {
	drv, err := csidriver.New(csidriver.Options{
		Root:       filepath.Join(c.StateDir, "csi", "data"),
		NodeID:     NodeName,
		ReadyDelay: opts.SnapshotReadyDelay,
		Logger:     opts.Logger,
	})
	if err != nil {
		return err
	}
	c.Driver = drv
	c.csiSocket = filepath.Join(c.StateDir, "csi", "csi.sock")
	c.driverDone = make(chan error, 1)
	go func() { c.driverDone <- drv.Serve(c.bgCtx, c.csiSocket) }()
	return waitFor(ctx, nil, 10*time.Second, "CSI socket", func(context.Context) (bool, error) {
		_, err := os.Stat(c.csiSocket)
		return err == nil, err
	})
}

// groupSnapshotFeatureGate turns on VolumeGroupSnapshot support in snapshot-controller and
// csi-snapshotter. The gate is GA and on by default in external-snapshotter v8.7; it is
// named anyway so that a later version with the gate off by default still serves group
// snapshots, and one that drops the gate fails at start-up instead of quietly not.
const groupSnapshotFeatureGate = "--feature-gates=CSIVolumeGroupSnapshot=true"

// snapshotClientFlags lifts the snapshot controllers' client-side throttling (5 requests/s,
// burst 10, 10 workers by default): each snapshot takes several API writes, so 50 at once
// queued for over a minute inside the "storage" before any was cut, which is the
// controllers' limit, not the sandbox storage's. A production cluster backing up many
// applications at once needs the same flags on its snapshot-controller and sidecar.
func snapshotClientFlags() []string {
	return []string{"--kube-api-qps=200", "--kube-api-burst=400", "--worker-threads=64"}
}

func (c *Cluster) startSnapshotController(context.Context) error {
	_, err := c.run(binSnapshotController, append([]string{
		"--kubeconfig", c.Kubeconfig,
		"--leader-election=false",
		groupSnapshotFeatureGate,
	}, snapshotClientFlags()...), nil)
	return err
}

func (c *Cluster) startCSISnapshotter(context.Context) error {
	_, err := c.run(binCSISnapshotter, append([]string{
		"--kubeconfig", c.Kubeconfig,
		"--csi-address", c.csiSocket,
		"--leader-election=false",
		groupSnapshotFeatureGate,
		// While a group snapshot is not ready, snapshot-controller rewrites its members'
		// VolumeSnapshotContent status from the group's first CreateVolumeGroupSnapshot reply,
		// setting readyToUse back to false; csi-snapshotter ignores status-only changes, so it
		// would only ask the driver again at its next resync (15 min by default).
		"--resync-period=2s",
	}, snapshotClientFlags()...), nil)
	return err
}

func (c *Cluster) startCSIProvisioner(context.Context) error {
	_, err := c.run(binCSIProvisioner, []string{
		"--kubeconfig", c.Kubeconfig,
		"--csi-address", c.csiSocket,
		"--leader-election=false",
		// PV names and volume names the driver sees: pvc-<uid>.
		"--extra-create-metadata",
		// 5 requests/s by default: 500 claims at once would wait minutes for their volumes.
		"--kube-api-qps=200", "--kube-api-burst=400",
	}, nil)
	return err
}

func (c *Cluster) installStorageClasses(ctx context.Context, opts Options) error {
	attach := false
	if _, err := c.Client.StorageV1().CSIDrivers().Create(ctx, &storagev1.CSIDriver{
		ObjectMeta: metav1.ObjectMeta{Name: DriverName},
		Spec:       storagev1.CSIDriverSpec{AttachRequired: &attach},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create CSIDriver: %w", err)
	}
	// Dynamic volumes go with their claims; static ones (CreateVolume) keep Retain.
	reclaim := corev1.PersistentVolumeReclaimDelete
	binding := storagev1.VolumeBindingImmediate
	if _, err := c.Client.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        StorageClassName,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"},
		},
		Provisioner:       DriverName,
		ReclaimPolicy:     &reclaim,
		VolumeBindingMode: &binding,
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create StorageClass: %w", err)
	}
	if _, err := c.Snapshots.SnapshotV1().VolumeSnapshotClasses().Create(ctx, &snapshotv1.VolumeSnapshotClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        SnapshotClassName,
			Annotations: map[string]string{"snapshot.storage.kubernetes.io/is-default-class": "true"},
		},
		Driver:         DriverName,
		DeletionPolicy: snapshotv1.VolumeSnapshotContentDelete,
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create VolumeSnapshotClass: %w", err)
	}
	var groupParams map[string]string
	if opts.GroupSnapshotReadyDelay > 0 {
		groupParams = map[string]string{csidriver.ParamReadyDelay: opts.GroupSnapshotReadyDelay.String()}
	}
	if _, err := c.Snapshots.GroupsnapshotV1().VolumeGroupSnapshotClasses().Create(ctx, &groupsnapshotv1.VolumeGroupSnapshotClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        GroupSnapshotClassName,
			Annotations: map[string]string{"groupsnapshot.storage.kubernetes.io/is-default-class": "true"},
		},
		Driver:         DriverName,
		DeletionPolicy: snapshotv1.VolumeSnapshotContentDelete,
		Parameters:     groupParams,
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create VolumeGroupSnapshotClass: %w", err)
	}
	return nil
}

func (c *Cluster) createNode(ctx context.Context) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        NodeName,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
			Labels: map[string]string{
				"type":                   "kwok",
				"kubernetes.io/hostname": NodeName,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
		},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("32"),
				corev1.ResourceMemory: resource.MustParse("256Gi"),
				corev1.ResourcePods:   resource.MustParse(strconv.Itoa(NodePods)),
			},
		},
	}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node: %w", err)
	}
	return waitFor(ctx, nil, 60*time.Second, "node Ready and untainted", func(ctx context.Context) (bool, error) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ready := false
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		// The node-lifecycle controller lifts the not-ready taint admission put on the node.
		return ready && len(n.Spec.Taints) == 0, nil
	})
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
