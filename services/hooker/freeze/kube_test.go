package freeze

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"
)

// A blueprint is decoded once per resourceVersion: backups of an unchanged
// blueprint share it, and an edit is seen by the next backup.
func TestKubeBlueprintsDecodeOncePerVersion(t *testing.T) {
	dyn := dynfake.NewSimpleDynamicClient(runtime.NewScheme(), redisBlueprint("KubeExec"))
	k := NewKubeBlueprints(dyn, false, "kanister")
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

// mongoFromPost is the MongoDB blueprint as K10 blog posts show it:
// cr.kanister.io, in kasten-io.
func mongoFromPost(t *testing.T) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile("../blueprint/testdata/mongo-hooks.yaml")
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(b, &u.Object); err != nil {
		t.Fatal(err)
	}
	if u.GetNamespace() != "kasten-io" || u.GetAPIVersion() != "cr.kanister.io/v1alpha1" {
		t.Fatalf("testdata is not the post's blueprint: %s in %s", u.GetAPIVersion(), u.GetNamespace())
	}
	return u
}

// The workload's namespace first when namespaced blueprints are allowed,
// then the shared ones in order; either group, whichever annotation bound
// the workload; the first found wins.
func TestKubeBlueprintsSearchOrder(t *testing.T) {
	shadow := mongoFromPost(t) // same name, freezeframe.io, in the hooker's own namespace
	shadow.SetAPIVersion("freezeframe.io/v1alpha1")
	shadow.SetNamespace("freezeframe")
	shadow.SetAnnotations(map[string]string{"freezeframe.io/max-freeze": "1m"})
	own := mongoFromPost(t) // and one in the workload's namespace
	own.SetNamespace("shop")
	own.SetAnnotations(map[string]string{"freezeframe.io/max-freeze": "2m"})
	shared := []string{"freezeframe", "kanister", "kasten-io"}

	for _, tt := range []struct {
		name          string
		objs          []runtime.Object
		kanisterFirst bool
		namespaced    bool
		wantNS        string
	}{
		{"K10's, with nothing else", []runtime.Object{mongoFromPost(t)}, true, false, "kasten-io"},
		{"K10's, bound by freezeframe's annotation", []runtime.Object{mongoFromPost(t)}, false, false, "kasten-io"},
		{"an earlier shared namespace wins", []runtime.Object{mongoFromPost(t), shadow}, true, false, "freezeframe"},
		{"the workload's namespace is not searched by default", []runtime.Object{mongoFromPost(t), shadow, own}, false, false, "freezeframe"},
		{"the workload's namespace wins when allowed", []runtime.Object{mongoFromPost(t), shadow, own}, false, true, "shop"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := NewKubeBlueprints(dynfake.NewSimpleDynamicClient(runtime.NewScheme(), tt.objs...), tt.namespaced, shared...)
			bp, err := k.Blueprint(t.Context(), "shop", "mongo-hooks", tt.kanisterFirst)
			if err != nil {
				t.Fatal(err)
			}
			if bp.Namespace != tt.wantNS {
				t.Errorf("found in %s, want %s", bp.Namespace, tt.wantNS)
			}
		})
	}
}

// A blueprint found nowhere: the error lists every namespace searched, the
// workload's first and once only, and those the hooker may not read.
func TestKubeBlueprintsNotFoundListsNamespaces(t *testing.T) {
	dyn := dynfake.NewSimpleDynamicClient(runtime.NewScheme(), mongoFromPost(t))
	dyn.PrependReactor("get", "blueprints", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetNamespace() == "kanister" {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: a.GetResource().Group, Resource: "blueprints"}, "no-such-hooks", errors.New("RBAC"))
		}
		return false, nil, nil
	})
	k := NewKubeBlueprints(dyn, true, "freezeframe", "shop", "kanister", "kasten-io")
	_, err := k.Blueprint(t.Context(), "shop", "no-such-hooks", true)
	var nf *BlueprintNotFoundError
	if !errors.As(err, &nf) || !errors.Is(err, ErrBlueprintNotFound) {
		t.Fatalf("error %v, want a BlueprintNotFoundError", err)
	}
	if want := []string{"shop", "freezeframe", "kanister", "kasten-io"}; !slices.Equal(nf.Namespaces, want) {
		t.Errorf("searched %q, want %q", nf.Namespaces, want)
	}
	if !slices.Equal(nf.Forbidden, []string{"kanister"}) {
		t.Errorf("forbidden %q, want [kanister]", nf.Forbidden)
	}
	for _, want := range []string{`"no-such-hooks"`, "shop, freezeframe, kanister, kasten-io", "freezeframe.io", "cr.kanister.io", "not allowed to read blueprints in kanister"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	// Still found past a namespace it may not read.
	if bp, err := k.Blueprint(t.Context(), "shop", "mongo-hooks", true); err != nil || bp.Namespace != "kasten-io" {
		t.Errorf("mongo-hooks: %v, %v", bp, err)
	}

	// In the workload's own namespace a refusal is the backup's error, not
	// a reason to look elsewhere.
	_, err = k.Blueprint(t.Context(), "kanister", "mongo-hooks", true)
	if !apierrors.IsForbidden(err) {
		t.Errorf("forbidden in the workload's namespace: %v", err)
	}
}

// Without namespaced blueprints, a blueprint only the workload's namespace
// holds is not found, and the error says how the operator allows it.
func TestKubeBlueprintsNamespacedOff(t *testing.T) {
	own := mongoFromPost(t)
	own.SetNamespace("shop")
	k := NewKubeBlueprints(dynfake.NewSimpleDynamicClient(runtime.NewScheme(), own), false, "freezeframe", "kanister")
	_, err := k.Blueprint(t.Context(), "shop", "mongo-hooks", true)
	var nf *BlueprintNotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("error %v, want a BlueprintNotFoundError", err)
	}
	if want := []string{"freezeframe", "kanister"}; !slices.Equal(nf.Namespaces, want) {
		t.Errorf("searched %q, want %q", nf.Namespaces, want)
	}
	if want := "the workload's namespace shop is not searched: blueprints there are used only when the operator sets HOOKER_NAMESPACED_BLUEPRINTS=true"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}
