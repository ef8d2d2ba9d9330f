package schedule_test

import (
	"errors"
	"testing"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/workload"
	"github.com/freezeframe/freezeframe/services/scheduler/schedule"
)

func TestKubeWorkloadsAnnotations(t *testing.T) {
	k := schedule.NewKubeWorkloads(kube())
	tests := []struct {
		kind, name   string
		want         string // the blueprint annotation's value
		wantNotFound bool
	}{
		{kind: "Deployment", name: "redis", want: "redis-hooks"},
		{kind: "statefulset", name: "pg", want: "pg-hooks"},
		{kind: "Deployment", name: "pg", wantNotFound: true},
		{kind: "StatefulSet", name: "ghost", wantNotFound: true},
	}
	for _, tt := range tests {
		t.Run(tt.kind+"/"+tt.name, func(t *testing.T) {
			got, err := k.Annotations(t.Context(), events.Workload{Cluster: cluster, Namespace: "shop", Kind: tt.kind, Name: tt.name})
			if tt.wantNotFound {
				if !errors.Is(err, workload.ErrNotFound) {
					t.Fatalf("err %v, want workload.ErrNotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v := got[schedule.AnnotationKanisterBlueprint] + got[schedule.AnnotationBlueprint]; v != tt.want {
				t.Errorf("blueprint annotation %q, want %q", v, tt.want)
			}
		})
	}
	if _, err := k.Annotations(t.Context(), events.Workload{Cluster: cluster, Namespace: "shop", Kind: "DaemonSet", Name: "x"}); err == nil || errors.Is(err, workload.ErrNotFound) {
		t.Errorf("unsupported kind: err %v, want a kind error", err)
	}
}
