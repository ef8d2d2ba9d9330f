package events

import (
	"errors"
	"fmt"
	"strings"
)

// Workload kinds freezeframe backs up.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
)

// Workload names the application a backup is for.
type Workload struct {
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
}

// Validate reports whether the workload can be backed up and carried in a subject.
func (w Workload) Validate() error {
	var errs []error
	if !isDNSLabel(w.Cluster) {
		errs = append(errs, fmt.Errorf("cluster %q: must be a DNS label", w.Cluster))
	}
	if !isDNSLabel(w.Namespace) {
		errs = append(errs, fmt.Errorf("namespace %q: must be a DNS label", w.Namespace))
	}
	if _, err := NormalizeKind(w.Kind); err != nil {
		errs = append(errs, err)
	}
	if !isDNSSubdomain(w.Name) {
		errs = append(errs, fmt.Errorf("name %q: must be a DNS subdomain", w.Name))
	}
	return errors.Join(errs...)
}

// NormalizeKind accepts a kind in any case, plural or short form
// ("deploy", "sts") and returns its canonical spelling.
func NormalizeKind(kind string) (string, error) {
	switch strings.ToLower(kind) {
	case "deployment", "deployments", "deploy":
		return KindDeployment, nil
	case "statefulset", "statefulsets", "sts":
		return KindStatefulSet, nil
	}
	return "", fmt.Errorf("kind %q: must be Deployment or StatefulSet", kind)
}

// String gives the workload as kind/name in namespace on cluster, for humans.
func (w Workload) String() string {
	return fmt.Sprintf("%s/%s -n %s (cluster %s)", strings.ToLower(w.Kind), w.Name, w.Namespace, w.Cluster)
}

// Key identifies the workload within the whole system; it is usable as a NATS
// subject token list and as a key-value key.
func (w Workload) Key() string {
	return strings.Join([]string{subjectToken(w.Cluster), subjectToken(w.Namespace), subjectToken(strings.ToLower(w.Kind)), subjectToken(w.Name)}, ".")
}

// ParseWorkloadRef reads "kind/name" as typed on a command line.
func ParseWorkloadRef(ref string) (kind, name string, err error) {
	k, n, ok := strings.Cut(ref, "/")
	if !ok || n == "" {
		return "", "", fmt.Errorf("workload %q: want kind/name, e.g. deployment/redis", ref)
	}
	kind, err = NormalizeKind(k)
	return kind, n, err
}
