package pipeline

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// indexPodLists answers a list of pods in one namespace from pods, indexed
// by namespace, as an API server's storage does, instead of the fake
// clientset's tracker, which filters every pod of the cluster by namespace
// on each call: at 10,000 workloads that scan was 30% of the benchmark's
// CPU (the hooker resolves each workload's pods once per backup). The
// rig's pods never change; a list across namespaces (an informer's) still
// goes to the tracker.
func indexPodLists(kube *kubefake.Clientset, pods []*corev1.Pod) {
	byNamespace := map[string][]*corev1.Pod{}
	for _, p := range pods {
		byNamespace[p.Namespace] = append(byNamespace[p.Namespace], p)
	}
	kube.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		list, ok := a.(k8stesting.ListAction)
		if !ok || a.GetNamespace() == "" {
			return false, nil, nil
		}
		sel := list.GetListRestrictions().Labels
		if sel == nil {
			sel = labels.Everything()
		}
		out := &corev1.PodList{}
		for _, p := range byNamespace[a.GetNamespace()] {
			if sel.Matches(labels.Set(p.Labels)) {
				out.Items = append(out.Items, *p.DeepCopy())
			}
		}
		return true, out, nil
	})
}
