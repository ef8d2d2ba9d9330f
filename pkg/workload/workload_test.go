package workload_test

import (
	"errors"
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/freezeframe/freezeframe/pkg/workload"
)

func pod(name string, phase corev1.PodPhase, claims ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "db", Labels: map[string]string{"app": "pg"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "postgres"}, {Name: "exporter"}}},
		Status:     corev1.PodStatus{Phase: phase},
	}
	for i, c := range claims {
		vol := "v" + string(rune('a'+i))
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
		p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: vol, MountPath: "/mnt/" + c})
	}
	return p
}

func TestResolveStatefulSet(t *testing.T) {
	client := fake.NewClientset(
		&appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "pg", Namespace: "db", Annotations: map[string]string{workload.AnnotationBlueprint: "pg-hooks"}},
			Spec:       appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pg"}}},
		},
		pod("pg-1", corev1.PodRunning, "data-pg-1", "wal-pg-1"),
		pod("pg-0", corev1.PodRunning, "data-pg-0"),
		pod("pg-2", corev1.PodPending, "data-pg-2"),
	)
	info, err := workload.NewResolver(client).Resolve(t.Context(), "db", "StatefulSet", "pg")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Pods) != 2 || info.Pods[0].Name != "pg-0" || info.Pods[1].Name != "pg-1" {
		t.Fatalf("pods %+v, want the running pg-0 and pg-1 in order", info.Pods)
	}
	if want := []string{"data-pg-0", "data-pg-1", "wal-pg-1"}; !reflect.DeepEqual(info.PVCs(), want) {
		t.Errorf("PVCs %v, want %v", info.PVCs(), want)
	}
	if got := info.Pods[1].Claims["wal-pg-1"]; got != "/mnt/wal-pg-1" {
		t.Errorf("mount path %q", got)
	}
	if !reflect.DeepEqual(info.Pods[0].Containers, []string{"postgres", "exporter"}) {
		t.Errorf("containers %v", info.Pods[0].Containers)
	}
	content, err := info.Content()
	if err != nil {
		t.Fatal(err)
	}
	if content["kind"] != "StatefulSet" || info.Annotations[workload.AnnotationBlueprint] != "pg-hooks" {
		t.Errorf("object kind %v, annotations %v", content["kind"], info.Annotations)
	}
}

func TestResolveMissingWorkload(t *testing.T) {
	_, err := workload.NewResolver(fake.NewClientset()).Resolve(t.Context(), "db", "Deployment", "ghost")
	if !errors.Is(err, workload.ErrNotFound) {
		t.Fatalf("err %v, want ErrNotFound", err)
	}
}

func TestBlueprintOf(t *testing.T) {
	tests := []struct {
		override     string
		annotations  map[string]string
		want         string
		wantKanister bool
	}{
		{"", nil, "", false},
		{"", map[string]string{workload.AnnotationKanisterBlueprint: "k"}, "k", true},
		{"", map[string]string{workload.AnnotationKanisterBlueprint: "k", workload.AnnotationBlueprint: "f"}, "f", false},
		{"o", map[string]string{workload.AnnotationKanisterBlueprint: "k"}, "o", false},
	}
	for _, tt := range tests {
		got, kanister := workload.BlueprintOf(tt.override, tt.annotations)
		if got != tt.want || kanister != tt.wantKanister {
			t.Errorf("BlueprintOf(%q, %v) = %q, %v; want %q, %v", tt.override, tt.annotations, got, kanister, tt.want, tt.wantKanister)
		}
	}
}
