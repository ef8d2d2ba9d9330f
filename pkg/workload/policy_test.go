package workload

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The hooker trusts a scheduled request's retention only for a workload its
// policy selects: the same rule the scheduler selects workloads by.
func TestPolicySelectionSelects(t *testing.T) {
	redis := &Info{Kind: kindDeployment, Namespace: "shop", Name: "redis", Labels: map[string]string{"app": "redis"}}
	tests := []struct {
		name string
		sel  PolicySelection
		want bool
	}{
		{"everything in the policy's namespace", PolicySelection{}, true},
		{"by label", PolicySelection{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "redis"}}}, true},
		{"other labels", PolicySelection{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pg"}}}, false},
		{"listed namespace", PolicySelection{Namespaces: []string{"bank", "shop"}}, true},
		{"other namespaces", PolicySelection{Namespaces: []string{"bank"}}, false},
		{"kind by short name", PolicySelection{Kinds: []string{"deploy"}}, true},
		{"other kind", PolicySelection{Kinds: []string{"sts"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.sel.Selects("shop", redis)
			if err != nil || got != tt.want {
				t.Fatalf("Selects = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	if _, err := (PolicySelection{Kinds: []string{"CronJob"}}).Selects("shop", redis); err == nil {
		t.Error("a selection of kind CronJob was accepted")
	}
	if ok, _ := (PolicySelection{}).Selects("bank", redis); ok {
		t.Error("a policy in bank with no namespaces selects a workload in shop")
	}
}
