package workload

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// BackupPolicyResource is the BackupPolicy custom resource. The scheduler
// runs policies; the hooker reads the one a scheduled request names, to
// honour the retention it carries only when the policy says the same.
var BackupPolicyResource = schema.GroupVersionResource{Group: "freezeframe.io", Version: "v1alpha1", Resource: "backuppolicies"}

// PolicySelection is a BackupPolicy's spec.selection: the workloads it backs
// up. The scheduler lists what it selects; the hooker asks whether it
// selects one workload (Selects). Both read it through this type, so they
// cannot disagree.
type PolicySelection struct {
	// Namespaces to look in; the policy's own when empty.
	Namespaces []string `json:"namespaces,omitempty"`
	// Kinds are Deployment and/or StatefulSet; both when empty.
	Kinds []string `json:"kinds,omitempty"`
	// LabelSelector over the workloads; everything when empty.
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`
}

// Selector is the selection's label selector; everything when none is set.
func (s PolicySelection) Selector() (labels.Selector, error) {
	if s.LabelSelector == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(s.LabelSelector)
}

// NamespacesFor is where a policy in policyNamespace looks: the listed
// namespaces, or its own.
func (s PolicySelection) NamespacesFor(policyNamespace string) []string {
	if len(s.Namespaces) == 0 {
		return []string{policyNamespace}
	}
	return s.Namespaces
}

// WorkloadKinds are the selected kinds, spelled as Resolve takes them
// (Deployment, StatefulSet); both when none is listed.
func (s PolicySelection) WorkloadKinds() ([]string, error) {
	if len(s.Kinds) == 0 {
		return []string{kindDeployment, kindStatefulSet}, nil
	}
	var out []string
	for _, k := range s.Kinds {
		kind, err := events.NormalizeKind(k)
		if err != nil {
			return nil, err
		}
		out = append(out, kind)
	}
	return out, nil
}

// Selects reports whether a policy in policyNamespace with this selection
// backs up w: w is in one of its namespaces, of one of its kinds, and its
// labels match the selector. An invalid selection is an error.
func (s PolicySelection) Selects(policyNamespace string, w *Info) (bool, error) {
	kinds, err := s.WorkloadKinds()
	if err != nil {
		return false, err
	}
	sel, err := s.Selector()
	if err != nil {
		return false, fmt.Errorf("label selector: %w", err)
	}
	return slices.Contains(s.NamespacesFor(policyNamespace), w.Namespace) && slices.Contains(kinds, w.Kind) && sel.Matches(labels.Set(w.Labels)), nil
}

// Workload kinds, as Resolve takes them.
const (
	kindDeployment  = events.KindDeployment
	kindStatefulSet = events.KindStatefulSet
)
