package sandbox

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// ExecLabel on a pod names an exec profile (see ExecFor). Every pod with the label, also
// the replacement of a deleted pod, gets a kwok Exec rule from its profile.
const ExecLabel = "sandbox.freezeframe.dev/exec"

var execResource = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "execs"}

type execProfile struct {
	container string
	workDir   string
	env       map[string]string
}

// ExecFor registers exec profile name: `kubectl exec <pod> -c <container>` into a pod
// labelled ExecLabel=name runs commands locally in workDir with env added (and the
// sandbox's client wrappers first on PATH).
func (c *Cluster) ExecFor(ctx context.Context, name, container, workDir string, env map[string]string) error {
	c.mu.Lock()
	c.execProfiles[name] = execProfile{container: container, workDir: workDir, env: maps.Clone(env)}
	c.mu.Unlock()
	// Pods that carried the label before the profile existed.
	pods, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: ExecLabel + "=" + name})
	if err != nil {
		return fmt.Errorf("exec profile %s: %w", name, err)
	}
	for i := range pods.Items {
		if err := c.applyExec(ctx, &pods.Items[i]); err != nil {
			return err
		}
	}
	return nil
}

// watchPods keeps kwok Exec rules and database servers in step with pods until the
// cluster stops: a pod labelled ExecLabel gets its profile's Exec rule, a pod annotated
// DatabaseAnnotation its server and Exec rule. One worker handles the pods in turn and
// retries failures (a Secret applied after its Deployment, say).
func (c *Cluster) watchPods(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(c.Client, 0)
	pods := factory.Core().V1().Pods()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	relevant := func(obj any) (*corev1.Pod, bool) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return nil, false
		}
		_, labelled := pod.Labels[ExecLabel]
		_, annotated := pod.Annotations[DatabaseAnnotation]
		return pod, labelled || annotated
	}
	enqueue := func(obj any) {
		if pod, ok := relevant(obj); ok {
			queue.Add(pod.Namespace + "/" + pod.Name)
		}
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: func(obj any) {
			pod, ok := relevant(obj)
			if !ok {
				return
			}
			ctx, cancel := context.WithTimeout(c.bgCtx, 30*time.Second)
			defer cancel()
			err := c.Dynamic.Resource(execResource).Namespace(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				c.log.Error("delete exec rule", "pod", pod.Namespace+"/"+pod.Name, "error", err)
			}
		},
	}); err != nil {
		return err
	}
	factory.Start(c.bgCtx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("sync %v informer", typ)
		}
	}
	go func() {
		<-c.bgCtx.Done()
		queue.ShutDown()
	}()
	go func() {
		for {
			key, shutdown := queue.Get()
			if shutdown {
				return
			}
			if err := c.syncPod(key, pods.Lister()); err != nil {
				c.log.Error("sync pod", "pod", key, "error", err)
				if queue.NumRequeues(key) < 20 {
					queue.AddRateLimited(key)
				}
			} else {
				queue.Forget(key)
			}
			queue.Done(key)
		}
	}()
	return nil
}

func (c *Cluster) syncPod(key string, lister corelisters.PodLister) error {
	ns, name, _ := strings.Cut(key, "/")
	pod, err := lister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.bgCtx, 2*time.Minute)
	defer cancel()
	if err := c.applyExec(ctx, pod); err != nil {
		return err
	}
	return c.serveDatabasePod(ctx, pod)
}

func (c *Cluster) applyExec(ctx context.Context, pod *corev1.Pod) error {
	c.mu.Lock()
	p, ok := c.execProfiles[pod.Labels[ExecLabel]]
	c.mu.Unlock()
	if !ok || pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil {
		return nil
	}
	return c.SetExec(ctx, pod.Namespace, pod.Name, p.container, p.workDir, p.env)
}

// SetExec makes `kubectl exec <pod> -c <container>` run commands locally in workDir with
// env added (plus the sandbox's client wrappers first on PATH), through a kwok Exec rule
// named after the pod. An existing rule is left as it is.
func (c *Cluster) SetExec(ctx context.Context, ns, pod, container, workDir string, env map[string]string) error {
	var envs []any
	for _, k := range slices.Sorted(maps.Keys(env)) {
		envs = append(envs, map[string]any{"name": k, "value": env[k]})
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1",
		"kind":       "Exec",
		"metadata":   map[string]any{"name": pod, "namespace": ns},
		"spec": map[string]any{"execs": []any{map[string]any{
			"containers": []any{container},
			"local":      map[string]any{"workDir": workDir, "envs": envs},
		}}},
	}}
	_, err := c.Dynamic.Resource(execResource).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create exec rule for %s/%s: %w", ns, pod, err)
	}
	return nil
}

// WaitExec waits until `kubectl exec <pod> -c <container> -- true` succeeds: kwok has
// picked up the pod's Exec rule.
func (c *Cluster) WaitExec(ctx context.Context, ns, pod, container string) error {
	return waitFor(ctx, nil, 30*time.Second, "exec into "+ns+"/"+pod, func(ctx context.Context) (bool, error) {
		_, err := c.Kubectl(ctx, "exec", "-n", ns, pod, "-c", container, "--", "true")
		return err == nil, err
	})
}
