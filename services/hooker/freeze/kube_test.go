package freeze

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	dynfake "k8s.io/client-go/dynamic/fake"
)

// A blueprint is decoded once per resourceVersion: backups of an unchanged
// blueprint share it, and an edit is seen by the next backup.
func TestKubeBlueprintsDecodeOncePerVersion(t *testing.T) {
	dyn := dynfake.NewSimpleDynamicClient(runtime.NewScheme(), redisBlueprint("KubeExec"))
	k := NewKubeBlueprints(dyn, "kanister")
	first, err := k.Blueprint(t.Context(), "shop", "redis-hooks", true)
	if err != nil {
		t.Fatal(err)
	}
	again, err := k.Blueprint(t.Context(), "shop", "redis-hooks", true)
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Error("unchanged blueprint decoded again")
	}

	res := dyn.Resource(KanisterBlueprintResource).Namespace("kanister")
	u, err := res.Get(t.Context(), "redis-hooks", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u.SetAnnotations(map[string]string{"freezeframe.io/max-freeze": "42s"})
	if _, err := res.Update(t.Context(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	edited, err := k.Blueprint(t.Context(), "shop", "redis-hooks", true)
	if err != nil {
		t.Fatal(err)
	}
	if edited == first || edited.MaxFreeze.String() != "42s" {
		t.Errorf("edited blueprint: same %v, max freeze %s", edited == first, edited.MaxFreeze)
	}

	if err := res.Delete(t.Context(), "redis-hooks", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Blueprint(t.Context(), "shop", "redis-hooks", true); err == nil {
		t.Error("deleted blueprint still found")
	}
}
