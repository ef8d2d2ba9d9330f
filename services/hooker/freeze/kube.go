package freeze

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/freezeframe/freezeframe/pkg/workload"
	"github.com/freezeframe/freezeframe/services/hooker/blueprint"
)

// Annotations that bind a workload to a blueprint.
const (
	AnnotationBlueprint         = workload.AnnotationBlueprint
	AnnotationKanisterBlueprint = workload.AnnotationKanisterBlueprint
)

// Blueprint resources, ours and Kanister's (same shape).
var (
	BlueprintResource         = schema.GroupVersionResource{Group: blueprint.GroupFreezeframe, Version: "v1alpha1", Resource: "blueprints"}
	KanisterBlueprintResource = schema.GroupVersionResource{Group: blueprint.GroupKanister, Version: "v1alpha1", Resource: "blueprints"}
)

// ErrBlueprintNotFound is returned when no namespace holds the blueprint.
var ErrBlueprintNotFound = errors.New("blueprint not found")

// KubeBlueprints reads Blueprint resources with a dynamic client.
type KubeBlueprints struct {
	client   dynamic.Interface
	fallback string
}

// NewKubeBlueprints reads blueprints through client; fallback is the
// namespace searched after the workload's own.
func NewKubeBlueprints(client dynamic.Interface, fallback string) KubeBlueprints {
	return KubeBlueprints{client: client, fallback: fallback}
}

// Blueprint looks for name in the workload's namespace, then in the
// fallback namespace, as our resource and as Kanister's; kanisterFirst
// prefers Kanister's resource (the workload used Kanister's annotation).
func (k KubeBlueprints) Blueprint(ctx context.Context, namespace, name string, kanisterFirst bool) (*blueprint.Blueprint, error) {
	resources := []schema.GroupVersionResource{BlueprintResource, KanisterBlueprintResource}
	if kanisterFirst {
		resources[0], resources[1] = resources[1], resources[0]
	}
	namespaces := []string{namespace}
	if k.fallback != "" && k.fallback != namespace {
		namespaces = append(namespaces, k.fallback)
	}
	for _, ns := range namespaces {
		for _, gvr := range resources {
			u, err := k.client.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				continue // not there, or that CRD is not installed
			}
			if err != nil {
				return nil, fmt.Errorf("get blueprint %s/%s (%s): %w", ns, name, gvr.Group, err)
			}
			return blueprint.FromUnstructured(u.UnstructuredContent())
		}
	}
	return nil, fmt.Errorf("%w: %q in namespaces %v", ErrBlueprintNotFound, name, namespaces)
}

// KubeObjects reads the Secrets and ConfigMaps that blueprint phases name.
type KubeObjects struct{ client kubernetes.Interface }

// NewKubeObjects reads objects through client.
func NewKubeObjects(client kubernetes.Interface) KubeObjects { return KubeObjects{client: client} }

// Secret reads a Secret's data for templates.

func (k KubeObjects) Secret(ctx context.Context, namespace, name string) (blueprint.Secret, error) {
	s, err := k.client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return blueprint.Secret{}, fmt.Errorf("get secret %s/%s: %w", namespace, name, err)
	}
	return blueprint.Secret{Name: s.Name, Namespace: s.Namespace, Type: string(s.Type), Data: s.Data}, nil
}

// ConfigMap reads a ConfigMap's data for templates.
func (k KubeObjects) ConfigMap(ctx context.Context, namespace, name string) (blueprint.ConfigMap, error) {
	c, err := k.client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return blueprint.ConfigMap{}, fmt.Errorf("get configmap %s/%s: %w", namespace, name, err)
	}
	return blueprint.ConfigMap{Name: c.Name, Namespace: c.Namespace, Data: c.Data, BinaryData: c.BinaryData}, nil
}
