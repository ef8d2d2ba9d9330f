package deploy

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Services are the four service commands, in pipeline order.
var Services = []string{"scheduler", "hooker", "snapshotter", "notifier"}

// BuildServices builds services/<name> for each name into outDir, as the Makefile does
// (GOWORK=off, each module on its own), and returns the binaries by name.
func BuildServices(ctx context.Context, root, outDir string, progress io.Writer, names ...string) (map[string]string, error) {
	bins := map[string]string{}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	start := time.Now()
	for _, n := range names {
		bin := filepath.Join(outDir, n)
		bins[n] = bin
		wg.Go(func() {
			cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
			cmd.Dir = filepath.Join(root, "services", n)
			cmd.Env = append(os.Environ(), "GOWORK=off")
			if out, err := cmd.CombinedOutput(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("build %s: %w: %s", n, err, strings.TrimSpace(string(out))))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errs[0]
	}
	fmt.Fprintf(progress, "[deploy] built %s in %s\n", strings.Join(names, ", "), time.Since(start).Round(100*time.Millisecond))
	return bins, nil
}

// WriteKubeconfig writes a kubeconfig for the cluster of base (server and TLS settings)
// that authenticates with token alone.
func WriteKubeconfig(path string, base *rest.Config, token, namespace string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["sandbox"] = &clientcmdapi.Cluster{
		Server:                   base.Host,
		CertificateAuthority:     base.CAFile,
		CertificateAuthorityData: base.CAData,
		InsecureSkipTLSVerify:    base.Insecure,
	}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "sandbox", AuthInfo: "sa", Namespace: namespace}
	cfg.CurrentContext = "sa"
	return clientcmd.WriteToFile(*cfg, path)
}

// Process is one service running as a child process, its output in a log file.
type Process struct {
	Name, Log string
	cmd       *exec.Cmd
	done      chan struct{}
	err       error
}

// Start runs bin with exactly env (plus PATH), its output appended to logPath.
func Start(name, bin, logPath string, env []string) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, killed with the test binary if that dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM and waits up to grace, then kills.
func (p *Process) Stop(grace time.Duration) {
	if exited, _ := p.Exited(); exited {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// LogTail returns the last n lines of the process's log.
func (p *Process) LogTail(n int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
