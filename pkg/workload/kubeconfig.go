package workload

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ClientConfig says how to reach the Kubernetes API. Embed it anonymously in
// a service configuration so that its keys read HOOKER_KUBECONFIG, not
// HOOKER_KUBE_KUBECONFIG.
type ClientConfig struct {
	Kubeconfig string  `envconfig:"KUBECONFIG" desc:"kubeconfig path; empty: in-cluster, or ~/.kube/config"`
	QPS        float32 `envconfig:"KUBE_QPS" default:"200" desc:"Kubernetes API requests per second; a throttled client must never queue a resume"`
	Burst      int     `envconfig:"KUBE_BURST" default:"400" desc:"Kubernetes API burst above KUBE_QPS"`
}

// RESTConfig loads the client configuration: the kubeconfig when one is
// named or found, the in-cluster service account otherwise.
func RESTConfig(c ClientConfig) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if c.Kubeconfig != "" {
		rules.ExplicitPath = c.Kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		in, inErr := rest.InClusterConfig()
		if inErr != nil {
			return nil, fmt.Errorf("kubernetes client config: %w (and not in a cluster: %v)", err, inErr)
		}
		cfg = in
	}
	cfg.QPS, cfg.Burst = c.QPS, c.Burst
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 200, 400
	}
	return cfg, nil
}

// Clientset loads the client configuration and builds a typed clientset; the
// REST config is returned for clients of other API groups.
func Clientset(c ClientConfig) (*rest.Config, *kubernetes.Clientset, error) {
	rc, err := RESTConfig(c)
	if err != nil {
		return nil, nil, err
	}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return rc, kc, nil
}
