package sandbox

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	snapshotclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/freezeframe/freezeframe/test/sandbox/csidriver"
)

// Names of the objects every sandbox has.
const (
	// NodeName is the kwok node that pods are scheduled onto.
	NodeName = "sandbox-node"
	// NodePods is how many pods the node takes (a kubelet's default is 110): the
	// benchmarks run 500 workloads at once beside the tests' own.
	NodePods = 2000
	// StorageClassName is the default StorageClass, backed by the sandbox CSI driver.
	StorageClassName = "sandbox"
	// SnapshotClassName is the default VolumeSnapshotClass, backed by the sandbox CSI driver.
	SnapshotClassName = "sandbox"
	// GroupSnapshotClassName is the default VolumeGroupSnapshotClass, backed by the sandbox
	// CSI driver.
	GroupSnapshotClassName = "sandbox"
	// DriverName is the sandbox CSI driver's name.
	DriverName = csidriver.DefaultName
)

// Options configures Start. The zero value is usable.
type Options struct {
	// BinDir holds the binaries from build.sh; when empty Start runs EnsureBinaries.
	BinDir string
	// StateDir holds data, logs, sockets and the kubeconfig. When empty a temporary
	// directory is created, and removed again by Stop.
	StateDir string
	// Progress receives build progress and one line per startup step; nil discards.
	Progress io.Writer
	// Logger receives the CSI driver's log; nil discards it.
	Logger *slog.Logger
	// SnapshotReadyDelay keeps new snapshots' readyToUse false this long, group snapshots'
	// members included (see Cluster.Driver.SetReadyDelay to change it later).
	SnapshotReadyDelay time.Duration
	// GroupSnapshotReadyDelay, when positive, is the default VolumeGroupSnapshotClass's
	// readyDelay parameter: group snapshots then take this long to turn ready, whatever
	// SnapshotReadyDelay and SetReadyDelay say.
	GroupSnapshotReadyDelay time.Duration
}

// Cluster is a running sandbox. Its clients talk to the sandbox as cluster-admin.
type Cluster struct {
	// Kubeconfig is the path of an admin kubeconfig for kubectl and client-go.
	Kubeconfig string
	// StateDir holds everything the sandbox writes (logs under StateDir/logs).
	StateDir string
	// BinDir holds the component binaries.
	BinDir string
	// Server is the apiserver URL.
	Server string

	Config    *rest.Config
	Client    kubernetes.Interface
	Snapshots snapshotclient.Interface
	Dynamic   dynamic.Interface
	// Driver is the in-process CSI driver that csi-snapshotter talks to.
	Driver *csidriver.Driver

	progress    io.Writer
	removeState bool
	logDir      string
	wrapperDir  string
	etcdURL     string
	token       string
	saKey       string
	saPub       string
	csiSocket   string
	log         *slog.Logger
	// bgCtx bounds what runs for the cluster's life (CSI driver, exec-rule watcher).
	bgCtx      context.Context
	stopBg     context.CancelFunc
	driverDone chan error

	mu    sync.Mutex
	procs []*Process // in start order
	// apiServer and apiServerArgs let RestartAPIServer start it again as it was.
	apiServer     *Process
	apiServerArgs []string
	databases     []*Process
	execProfiles  map[string]execProfile
	podServers    map[string]*podServer // by namespace/claim
	podServerErrs map[string]error      // last failure, by namespace/claim
	stopOnce      sync.Once
	stopErr       error
}

// Start builds what is missing (see EnsureBinaries), then starts etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kwok, the CSI driver, snapshot-controller,
// csi-snapshotter and csi-provisioner on free loopback ports, and installs the snapshot CRDs, the default
// StorageClass, VolumeSnapshotClass and VolumeGroupSnapshotClass, and a kwok node, waiting
// until each is ready.
// On error everything started so far is stopped. ctx bounds startup only.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BinDir == "" {
		if opts.BinDir, err = EnsureBinaries(ctx, opts.Progress); err != nil {
			return nil, err
		}
	} else if err := checkBinaries(opts.BinDir); err != nil {
		return nil, err
	}
	c := &Cluster{
		BinDir:        opts.BinDir,
		StateDir:      opts.StateDir,
		progress:      opts.Progress,
		log:           opts.Logger,
		execProfiles:  map[string]execProfile{},
		podServers:    map[string]*podServer{},
		podServerErrs: map[string]error{},
	}
	// Background work outlives ctx, which only bounds startup.
	c.bgCtx, c.stopBg = context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()
	if c.StateDir == "" {
		// Not under t.TempDir(): unix socket paths must stay under 108 bytes.
		if c.StateDir, err = os.MkdirTemp("", "freezeframe-sandbox-"); err != nil {
			return nil, fmt.Errorf("start sandbox: %w", err)
		}
		c.removeState = true
	}
	if c.StateDir, err = filepath.Abs(c.StateDir); err != nil {
		return nil, fmt.Errorf("start sandbox: %w", err)
	}
	// PostgreSQL runs as its own user and must reach its data inside the state directory.
	if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("start sandbox: %w", err)
	}
	if err := os.Chmod(c.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("start sandbox: %w", err)
	}
	c.logDir = filepath.Join(c.StateDir, "logs")
	c.wrapperDir = filepath.Join(c.StateDir, "bin")
	for _, d := range []string{c.logDir, c.wrapperDir, filepath.Join(c.StateDir, "pki"), filepath.Join(c.StateDir, "csi")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("start sandbox: %w", err)
		}
	}
	start := time.Now()
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"etcd", c.startEtcd},
		{"kube-apiserver", c.startAPIServer},
		{"kube-controller-manager", c.startControllerManager},
		{"kube-scheduler", c.startScheduler},
		{"CRDs", c.installCRDs},
		{"kwok", c.startKwok},
		{"CSI driver", func(ctx context.Context) error { return c.startDriver(ctx, opts) }},
		{"pod watcher", c.watchPods},
		{"snapshot-controller", c.startSnapshotController},
		{"csi-snapshotter", c.startCSISnapshotter},
		{"csi-provisioner", c.startCSIProvisioner},
		{"storage classes", func(ctx context.Context) error { return c.installStorageClasses(ctx, opts) }},
		{"node", c.createNode},
	}
	for _, s := range steps {
		t := time.Now()
		if err := s.fn(ctx); err != nil {
			return nil, fmt.Errorf("start sandbox: %s: %w", s.name, err)
		}
		c.logf("%s ready (%.1fs)", s.name, time.Since(t).Seconds())
	}
	c.logf("sandbox up in %.1fs; KUBECONFIG=%s", time.Since(start).Seconds(), c.Kubeconfig)
	return c, nil
}

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.progress, "[sandbox] "+format+"\n", args...)
}

// Stop stops every process the sandbox started (process groups, so nothing is left) and
// removes the state directory if Start created it. It is safe to call more than once.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		procs := append(append([]*Process(nil), c.databases...), reverse(c.procs)...)
		c.mu.Unlock()
		// The cluster is thrown away: no component needs a graceful shutdown, and the
		// apiserver's takes over 10s while its watches drain.
		for _, p := range procs {
			p.Stop(3 * time.Second)
		}
		c.stopBg()
		if c.driverDone != nil {
			if err := <-c.driverDone; err != nil {
				c.stopErr = errors.Join(c.stopErr, err)
			}
		}
		if c.removeState {
			if err := os.RemoveAll(c.StateDir); err != nil {
				c.stopErr = errors.Join(c.stopErr, fmt.Errorf("remove sandbox state: %w", err))
			}
		}
	})
	return c.stopErr
}

func reverse(ps []*Process) []*Process {
	out := make([]*Process, 0, len(ps))
	for i := len(ps) - 1; i >= 0; i-- {
		out = append(out, ps[i])
	}
	return out
}

func (c *Cluster) run(name string, args []string, env []string) (*Process, error) {
	cmd := exec.Command(filepath.Join(c.BinDir, name), args...)
	cmd.Dir = c.StateDir
	cmd.Env = append(os.Environ(), env...)
	p, err := Spawn(name, c.logDir, cmd)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// waitFor polls cond every interval until it is true, ctx ends, timeout passes, or p exits.
func waitFor(ctx context.Context, p *Process, timeout time.Duration, what string, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if p != nil {
			if err := p.Exited(); err != nil {
				return err
			}
		}
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("wait for %s: %w (last error: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func httpOK(ctx context.Context, url, token string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // loopback, self-signed
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return true, nil
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	p, err := c.run(binEtcd, []string{
		"--name", "sandbox",
		"--data-dir", filepath.Join(c.StateDir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "sandbox=" + peer,
		// A throwaway cluster: durability is not worth the fsync latency.
		"--unsafe-no-fsync",
		"--log-level", "warn",
	}, nil)
	if err != nil {
		return err
	}
	c.etcdURL = client
	return waitFor(ctx, p, 30*time.Second, "etcd health", func(ctx context.Context) (bool, error) {
		return httpOK(ctx, client+"/health", "")
	})
}

// Kubectl runs kubectl against the sandbox and returns its standard output; on failure
// the error carries standard error.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	return c.KubectlStdin(ctx, nil, args...)
}

// KubectlStdin is Kubectl with stdin (for `kubectl exec -i`).
func (c *Cluster) KubectlStdin(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Stdin = stdin
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
