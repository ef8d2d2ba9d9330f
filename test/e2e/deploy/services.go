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
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/freezeframe/freezeframe/test/sandbox"
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

// Start runs bin with exactly env (plus PATH), its output in logDir/<name>.log; the
// sandbox's Process stops it (and its process group) and shows its log.
func Start(name, bin, logDir string, env []string) (*sandbox.Process, error) {
	cmd := exec.Command(bin)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	return sandbox.Spawn(name, logDir, cmd)
}
