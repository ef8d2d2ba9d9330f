package policy

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// Workload is a selected Deployment or StatefulSet.
type Workload struct {
	Namespace, Kind, Name string
	Annotations           map[string]string
}

// KubeLister lists workloads through the Kubernetes API.
type KubeLister struct{ client kubernetes.Interface }

// NewKubeLister returns a lister over a clientset.
func NewKubeLister(c kubernetes.Interface) *KubeLister { return &KubeLister{client: c} }

// List returns the workloads of kind in namespace matching sel.
func (k *KubeLister) List(ctx context.Context, namespace, kind string, sel labels.Selector) ([]Workload, error) {
	opts := metav1.ListOptions{LabelSelector: sel.String()}
	var out []Workload
	switch kind {
	case events.KindDeployment:
		l, err := k.client.AppsV1().Deployments(namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list deployments in %s: %w", namespace, err)
		}
		for _, d := range l.Items {
			out = append(out, Workload{Namespace: d.Namespace, Kind: kind, Name: d.Name, Annotations: d.Annotations})
		}
	case events.KindStatefulSet:
		l, err := k.client.AppsV1().StatefulSets(namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list statefulsets in %s: %w", namespace, err)
		}
		for _, s := range l.Items {
			out = append(out, Workload{Namespace: s.Namespace, Kind: kind, Name: s.Name, Annotations: s.Annotations})
		}
	default:
		return nil, fmt.Errorf("kind %q: must be Deployment or StatefulSet", kind)
	}
	return out, nil
}
