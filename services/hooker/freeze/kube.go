package freeze

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
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

// ErrBlueprintNotFound is returned when no namespace holds the blueprint
// (as a *BlueprintNotFoundError, which says where it was looked for).
var ErrBlueprintNotFound = errors.New("blueprint not found")

// BlueprintNotFoundError lists every namespace searched for a blueprint that
// none of them holds. It matches ErrBlueprintNotFound.
type BlueprintNotFoundError struct {
	Name string
	// Namespaces were searched in this order (the workload's own first
	// when namespaced blueprints are allowed).
	Namespaces []string
	// Forbidden are the searched namespaces the hooker may not read
	// blueprints in (RBAC that does not cover them).
	Forbidden []string
	// NamespacedOff is the workload's namespace when it was not searched
	// because namespaced blueprints are not allowed.
	NamespacedOff string
}

func (e *BlueprintNotFoundError) Error() string {
	msg := fmt.Sprintf("%s: no %s or %s Blueprint %q in namespaces %s", ErrBlueprintNotFound,
		blueprint.GroupFreezeframe, blueprint.GroupKanister, e.Name, strings.Join(e.Namespaces, ", "))
	if len(e.Forbidden) > 0 {
		msg += fmt.Sprintf(" (not allowed to read blueprints in %s)", strings.Join(e.Forbidden, ", "))
	}
	if e.NamespacedOff != "" && !slices.Contains(e.Namespaces, e.NamespacedOff) {
		msg += fmt.Sprintf("; the workload's namespace %s is not searched: blueprints there are used only when the operator sets HOOKER_NAMESPACED_BLUEPRINTS=true", e.NamespacedOff)
	}
	return msg
}

func (e *BlueprintNotFoundError) Unwrap() error { return ErrBlueprintNotFound }

// KubeBlueprints reads Blueprint resources with a dynamic client. Every
// backup reads its blueprint again (the hooker may only get blueprints, not
// watch them), but decodes it only when it changed: the decoded blueprint is
// kept per object and resourceVersion, and shared read-only by the backups
// that use it.
type KubeBlueprints struct {
	client dynamic.Interface
	// namespaced: the workload's own namespace is searched first.
	namespaced bool
	shared     []string // searched in order (after the workload's namespace when namespaced)

	mu      sync.Mutex
	decoded map[blueprintKey]decodedBlueprint
}

type blueprintKey struct {
	gvr             schema.GroupVersionResource
	namespace, name string
}

type decodedBlueprint struct {
	uid             types.UID
	resourceVersion string
	content         map[string]any // compared when the server sets no resourceVersion (fake clients)
	bp              *blueprint.Blueprint
}

func (d decodedBlueprint) holds(u *unstructured.Unstructured) bool {
	if rv := u.GetResourceVersion(); rv != "" {
		return d.uid == u.GetUID() && d.resourceVersion == rv
	}
	return d.resourceVersion == "" && sameContent(d.content, u.Object)
}

// sameContent compares unstructured content (maps, slices, JSON scalars)
// without allocating, unlike reflect.DeepEqual.
func sameContent(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !sameContent(av, bv) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !sameContent(a[i], b[i]) {
				return false
			}
		}
		return true
	case string, bool, int64, float64, nil:
		return a == b
	}
	return reflect.DeepEqual(a, b)
}

// maxDecodedBlueprints bounds the cache; blueprints are few, and one that
// does not fit is decoded on every read, as before.
const maxDecodedBlueprints = 1024

// NewKubeBlueprints reads blueprints through client, from each of the
// shared namespaces in order (the hooker's HOOKER_BLUEPRINT_NAMESPACES),
// and first from the workload's namespace when namespaced (the hooker's
// HOOKER_NAMESPACED_BLUEPRINTS).
func NewKubeBlueprints(client dynamic.Interface, namespaced bool, shared ...string) *KubeBlueprints {
	return &KubeBlueprints{client: client, namespaced: namespaced, shared: slices.Clone(shared), decoded: map[blueprintKey]decodedBlueprint{}}
}

// Blueprint looks for name in the workload's namespace, then in the shared
// namespaces, as our resource and as Kanister's; kanisterFirst prefers
// Kanister's resource (the workload used Kanister's annotation). The first
// found wins. When none holds it the error is a *BlueprintNotFoundError.
func (k *KubeBlueprints) Blueprint(ctx context.Context, namespace, name string, kanisterFirst bool) (*blueprint.Blueprint, error) {
	resources := []schema.GroupVersionResource{BlueprintResource, KanisterBlueprintResource}
	if kanisterFirst {
		resources[0], resources[1] = resources[1], resources[0]
	}
	notFound := &BlueprintNotFoundError{Name: name}

	// 1. The workload's own namespace, only when the operator allows
	// namespaced blueprints: otherwise whoever may create a Blueprint there
	// would choose what the hooker runs. Every error here is the backup's
	// error.
	if k.namespaced {
		notFound.Namespaces = append(notFound.Namespaces, namespace)
		if bp, err := k.find(ctx, namespace, name, resources); bp != nil || err != nil {
			return bp, err
		}
	} else {
		notFound.NamespacedOff = namespace
	}

	// 2. The shared namespaces, where the operator, Kanister and K10 keep
	// blueprints. RBAC restricted to some namespaces need not cover them
	// all: one the hooker may not read holds nothing it could use, and the
	// failure says so.
	for _, ns := range k.shared {
		if k.namespaced && ns == namespace {
			continue // searched in step 1
		}
		notFound.Namespaces = append(notFound.Namespaces, ns)
		bp, err := k.find(ctx, ns, name, resources)
		if apierrors.IsForbidden(err) {
			notFound.Forbidden = append(notFound.Forbidden, ns)
			continue
		}
		if bp != nil || err != nil {
			return bp, err
		}
	}
	return nil, notFound
}

// find reads name in ns as each resource in turn; nil and no error when
// none of them has it (or its CRD is not installed).
func (k *KubeBlueprints) find(ctx context.Context, ns, name string, resources []schema.GroupVersionResource) (*blueprint.Blueprint, error) {
	for _, gvr := range resources {
		key := blueprintKey{gvr: gvr, namespace: ns, name: name}
		u, err := k.client.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			k.forget(key)
			continue // not there, or that CRD is not installed
		}
		if err != nil {
			return nil, fmt.Errorf("get blueprint %s/%s (%s): %w", ns, name, gvr.Group, err)
		}
		return k.decode(key, u)
	}
	return nil, nil
}

// decode returns the blueprint u holds, decoded once per resourceVersion.
func (k *KubeBlueprints) decode(key blueprintKey, u *unstructured.Unstructured) (*blueprint.Blueprint, error) {
	k.mu.Lock()
	d, ok := k.decoded[key]
	k.mu.Unlock()
	if ok && d.holds(u) {
		return d.bp, nil
	}
	bp, err := blueprint.FromUnstructured(u.UnstructuredContent())
	if err != nil {
		k.forget(key)
		return nil, err
	}
	d = decodedBlueprint{uid: u.GetUID(), resourceVersion: u.GetResourceVersion(), bp: bp}
	if d.resourceVersion == "" {
		d.content = u.Object // u is this call's own copy
	}
	k.mu.Lock()
	if _, ok := k.decoded[key]; ok || len(k.decoded) < maxDecodedBlueprints {
		k.decoded[key] = d
	}
	k.mu.Unlock()
	return bp, nil
}

func (k *KubeBlueprints) forget(key blueprintKey) {
	k.mu.Lock()
	delete(k.decoded, key)
	k.mu.Unlock()
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

// Pod reads a pod, to check a hook's target just before the exec.
func (k KubeObjects) Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	p, err := k.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get pod %s/%s: %w", namespace, name, err)
	}
	return p, nil
}

// ConfigMap reads a ConfigMap's data for templates.
func (k KubeObjects) ConfigMap(ctx context.Context, namespace, name string) (blueprint.ConfigMap, error) {
	c, err := k.client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return blueprint.ConfigMap{}, fmt.Errorf("get configmap %s/%s: %w", namespace, name, err)
	}
	return blueprint.ConfigMap{Name: c.Name, Namespace: c.Namespace, Data: c.Data, BinaryData: c.BinaryData}, nil
}
