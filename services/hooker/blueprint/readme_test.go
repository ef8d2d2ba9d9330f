package blueprint

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The example blueprints of docs/blueprints.md are what users copy: each
// must decode and validate as the hooker would validate it.
func TestREADMEBlueprintsValidate(t *testing.T) {
	readme, err := os.ReadFile("../../../docs/blueprints.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(readme), "```yaml\n")[1:]
	n := 0
	for _, b := range blocks {
		doc := b[:strings.Index(b, "```")]
		if !strings.Contains(doc, "kind: Blueprint") {
			continue
		}
		n++
		bp, err := Parse([]byte(doc))
		if err != nil {
			t.Errorf("docs/blueprints.md blueprint %d: %v", n, err)
			continue
		}
		actions := []string{ActionPrehook}
		if _, err := bp.Action(ActionPosthook); err == nil {
			actions = append(actions, ActionPosthook)
		}
		if err := bp.Validate(actions...); err != nil {
			t.Errorf("docs/blueprints.md blueprint %s: %v", bp.Name, err)
		}
	}
	if n < 4 {
		t.Fatalf("found %d example blueprints in docs/blueprints.md, want at least 4", n)
	}
}

func TestMaxFreezeAnnotation(t *testing.T) {
	doc := func(v string) []byte {
		return []byte("apiVersion: freezeframe.io/v1alpha1\nkind: Blueprint\nmetadata:\n  name: b\n  annotations: {\"freezeframe.io/max-freeze\": \"" + v + "\"}\nactions: {}\n")
	}
	bp, err := Parse(doc("90s"))
	if err != nil || bp.MaxFreeze != 90*time.Second {
		t.Fatalf("90s: %v %v", bp, err)
	}
	for _, bad := range []string{"soon", "-1s", "0s"} {
		if _, err := Parse(doc(bad)); err == nil || !strings.Contains(err.Error(), AnnotationMaxFreeze) {
			t.Errorf("%q: err %v, want one naming the annotation", bad, err)
		}
	}
}
