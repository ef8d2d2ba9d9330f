package workload

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
)

// ErrNotFound is returned when the workload does not exist.
var ErrNotFound = errors.New("workload not found")

// ErrNoPods is returned when the workload has no running pod to exec into.
var ErrNoPods = errors.New("workload has no running pods")

// Pod is one running pod of a workload.
type Pod struct {
	Name       string
	Containers []string
	// Claims maps each PVC the pod mounts to the mount path in its first
	// container that mounts it (Kanister's PersistentVolumeClaims shape).
	Claims map[string]string
}

// Info is a resolved workload.
type Info struct {
	Kind        string
	Name        string
	Namespace   string
	Annotations map[string]string
	// Labels are the workload's own labels (what a BackupPolicy selects).
	Labels map[string]string
	// object is the workload as read; Content converts it for templates.
	object runtime.Object
	// Pods are the running pods, sorted by name.
	Pods []Pod
	// Replicas is how many pods the workload asks for (spec.replicas).
	Replicas int32
	// Selector selects the workload's pods (spec.selector): a pod it does
	// not match is not the workload's, whatever its name.
	Selector labels.Selector
}

// Content is the workload as unstructured content, for templates that read
// .Object. It is converted on demand: a map of the whole object is several
// kilobytes per backup in flight, and most blueprints never look at it.
func (i *Info) Content() (map[string]any, error) {
	if i.object == nil {
		return nil, nil
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(i.object)
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s as unstructured: %w", i.Kind, i.Namespace, i.Name, err)
	}
	return content, nil
}

// PVCs returns every claim mounted by the workload's pods, sorted, once each.
func (i *Info) PVCs() []string {
	var out []string
	for _, p := range i.Pods {
		for c := range p.Claims {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Resolver reads workloads through the Kubernetes API.
type Resolver struct{ client kubernetes.Interface }

// NewResolver returns a resolver over a clientset.
func NewResolver(c kubernetes.Interface) *Resolver { return &Resolver{client: c} }

// Resolve reads a Deployment or StatefulSet and its running pods.
func (r *Resolver) Resolve(ctx context.Context, namespace, kind, name string) (*Info, error) {
	var (
		obj      runtime.Object
		selector *metav1.LabelSelector
		meta     metav1.ObjectMeta
		replicas int32
		err      error
	)
	switch kind {
	case kindDeployment:
		var d *appsv1.Deployment
		d, err = r.client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			obj, selector, meta = d, d.Spec.Selector, d.ObjectMeta
			replicas = replicasOf(d.Spec.Replicas)
			d.TypeMeta = metav1.TypeMeta{APIVersion: "apps/v1", Kind: kindDeployment}
		}
	case kindStatefulSet:
		var s *appsv1.StatefulSet
		s, err = r.client.AppsV1().StatefulSets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			obj, selector, meta = s, s.Spec.Selector, s.ObjectMeta
			replicas = replicasOf(s.Spec.Replicas)
			s.TypeMeta = metav1.TypeMeta{APIVersion: "apps/v1", Kind: kindStatefulSet}
		}
	default:
		return nil, fmt.Errorf("resolve %s %s/%s: unsupported kind", kind, namespace, name)
	}
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("resolve %s %s/%s: %w", kind, namespace, name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("resolve %s %s/%s: %w", kind, namespace, name, err)
	}
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return nil, fmt.Errorf("resolve %s %s/%s: selector: %w", kind, namespace, name, err)
	}
	pods, err := r.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("list pods of %s %s/%s: %w", kind, namespace, name, err)
	}
	info := &Info{Kind: kind, Name: name, Namespace: namespace, Annotations: meta.Annotations, Labels: meta.Labels, object: obj, Replicas: replicas, Selector: sel}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		info.Pods = append(info.Pods, podOf(&p))
	}
	sort.Slice(info.Pods, func(i, j int) bool { return info.Pods[i].Name < info.Pods[j].Name })
	return info, nil
}

// replicasOf reads spec.replicas, which Kubernetes defaults to 1.
func replicasOf(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

func podOf(p *corev1.Pod) Pod {
	claimOfVolume := map[string]string{}
	for _, v := range p.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			claimOfVolume[v.Name] = v.PersistentVolumeClaim.ClaimName
		}
	}
	out := Pod{Name: p.Name, Claims: map[string]string{}}
	for _, c := range p.Spec.Containers {
		out.Containers = append(out.Containers, c.Name)
		for _, m := range c.VolumeMounts {
			if claim, ok := claimOfVolume[m.Name]; ok {
				if _, seen := out.Claims[claim]; !seen {
					out.Claims[claim] = m.MountPath
				}
			}
		}
	}
	// A claim mounted by no container (e.g. only by an init container) is
	// still the workload's data.
	for _, claim := range claimOfVolume {
		if _, ok := out.Claims[claim]; !ok {
			out.Claims[claim] = ""
		}
	}
	return out
}

// Annotations that bind a workload to its blueprint. freezeframe's own wins
// over Kanister's when both are set.
const (
	AnnotationBlueprint         = "freezeframe.io/blueprint"
	AnnotationKanisterBlueprint = "kanister.kasten.io/blueprint"
)

// BlueprintOf names the blueprint of a workload: an explicit override first,
// then freezeframe's annotation, then Kanister's. kanister says the name came
// from Kanister's annotation, where Kanister's Blueprint resource is looked
// up first.
func BlueprintOf(override string, annotations map[string]string) (name string, kanister bool) {
	if override != "" {
		return override, false
	}
	if n := annotations[AnnotationBlueprint]; n != "" {
		return n, false
	}
	return annotations[AnnotationKanisterBlueprint], annotations[AnnotationKanisterBlueprint] != ""
}

// Annotations that choose how a workload's volumes are snapshotted. A
// request that sets the same thing wins: for retention, only one the hooker
// trusts (a BackupPolicy's, checked against the policy).
const (
	// AnnotationSnapshotClass names the VolumeSnapshotClass (or, for a group
	// snapshot, the VolumeGroupSnapshotClass) to use instead of the default
	// class of the volumes' CSI driver.
	AnnotationSnapshotClass = "freezeframe.io/snapshot-class"
	// AnnotationSnapshotsToKeep is how many complete backups of the workload
	// the snapshotter keeps; older ones are deleted.
	AnnotationSnapshotsToKeep = "freezeframe.io/snapshots-to-keep"
)

// SnapshotSettingsOf returns the snapshot class and retention of a workload:
// the given ones when set (a request's class; a retention the hooker
// trusts), else its annotations'. An annotation that is not a
// positive number of snapshots is an error, reported before anything is
// frozen.
func SnapshotSettingsOf(class string, keep int, annotations map[string]string) (string, int, error) {
	if class == "" {
		class = annotations[AnnotationSnapshotClass]
	}
	if v, ok := annotations[AnnotationSnapshotsToKeep]; ok && keep == 0 {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			return "", 0, fmt.Errorf("annotation %s=%q: want a whole number of snapshots, 1 or more", AnnotationSnapshotsToKeep, v)
		}
		keep = n
	}
	return class, keep, nil
}
