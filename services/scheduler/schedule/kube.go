package schedule

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/workload"
)

// Annotations that bind a workload to the blueprint that quiesces it. The
// freezeframe one wins when both are set, so a workload already annotated
// for Kanister can be pointed at a different blueprint for freezeframe.
const (
	AnnotationBlueprint         = workload.AnnotationBlueprint
	AnnotationKanisterBlueprint = workload.AnnotationKanisterBlueprint
)

// KubeWorkloads reads workloads through the Kubernetes API.
type KubeWorkloads struct{ client kubernetes.Interface }

// NewKubeWorkloads returns a reader over a clientset.
func NewKubeWorkloads(c kubernetes.Interface) *KubeWorkloads { return &KubeWorkloads{client: c} }

// Annotations returns the annotations of a Deployment or StatefulSet, or an
// error wrapping workload.ErrNotFound when it does not exist.
func (k *KubeWorkloads) Annotations(ctx context.Context, w events.Workload) (map[string]string, error) {
	kind, err := events.NormalizeKind(w.Kind)
	if err != nil {
		return nil, fmt.Errorf("get workload: %w", err)
	}
	var obj metav1.Object
	switch kind {
	case events.KindDeployment:
		obj, err = k.client.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
	case events.KindStatefulSet:
		obj, err = k.client.AppsV1().StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("get %s %s/%s: %w", kind, w.Namespace, w.Name, workload.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s %s/%s: %w", kind, w.Namespace, w.Name, err)
	}
	return obj.GetAnnotations(), nil
}

// blueprintOf names the blueprint a request runs with: the request's
// override, else the workload's annotation; "" when there is none.
func blueprintOf(req *events.BackupRequested, annotations map[string]string) string {
	name, _ := workload.BlueprintOf(req.Blueprint, annotations)
	return name
}
