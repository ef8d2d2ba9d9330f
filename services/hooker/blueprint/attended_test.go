package blueprint

import (
	"errors"
	"strings"
	"testing"
)

func TestAttendedPhasesAnnotation(t *testing.T) {
	doc := func(v string) []byte {
		return []byte(`apiVersion: freezeframe.io/v1alpha1
kind: Blueprint
metadata:
  name: b
  annotations: {"freezeframe.io/attended-phases": "` + v + `"}
actions:
  backupPrehook:
    phases: [{func: KubeExec, name: lock, args: {namespace: n, pod: p, container: c, command: ["true"]}}]
  backupPosthook:
    phases:
    - {func: KubeExec, name: unlock, args: {namespace: n, pod: p, container: c, command: ["true"]}}
    - {func: KubeExec, name: notify, args: {namespace: n, pod: p, container: c, command: ["true"]}}
    deferPhase: {func: KubeExec, name: cleanup, args: {namespace: n, pod: p, container: c, command: ["true"]}}
`)
	}
	for _, tc := range []struct {
		value    string
		attended []string
	}{
		{"notify", []string{"notify"}},
		{" notify , cleanup", []string{"notify", "cleanup"}},
		{"*", []string{"unlock", "notify", "cleanup"}},
	} {
		bp, err := Parse(doc(tc.value))
		if err != nil {
			t.Fatalf("%q: %v", tc.value, err)
		}
		for _, ph := range []string{"unlock", "notify", "cleanup"} {
			want := strings.Contains(strings.Join(tc.attended, ","), ph)
			if got := bp.Attended(ph); got != want {
				t.Errorf("%q: Attended(%s) = %v, want %v", tc.value, ph, got, want)
			}
		}
	}
	for _, bad := range []string{"lock", "unlock,", "nosuch"} {
		_, err := Parse(doc(bad))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), AnnotationAttendedPhases) {
			t.Errorf("%q: err %v, want an invalid blueprint naming the annotation", bad, err)
		}
	}
	plain, err := Parse([]byte(strings.Replace(string(doc("x")), `{"freezeframe.io/attended-phases": "x"}`, "{}", 1)))
	if err != nil || plain.Attended("unlock") {
		t.Errorf("without the annotation: %v, attended %v; want every phase unattended", err, plain != nil && plain.Attended("unlock"))
	}
}
