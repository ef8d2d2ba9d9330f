package blueprint

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestParseMongoYAML(t *testing.T) {
	bp := mustParseFile(t, "mongo-hooks.yaml")
	if bp.Name != "mongo-hooks" || bp.Namespace != "kasten-io" {
		t.Errorf("name/namespace = %q/%q", bp.Name, bp.Namespace)
	}
	if got := sortedKeys(bp.Actions); !reflect.DeepEqual(got, []string{ActionPosthook, ActionPrehook}) {
		t.Fatalf("actions = %v", got)
	}
	ph := bp.Actions[ActionPrehook].Phases[0]
	if ph.Func != FuncKubeExec || ph.Name != "lockMongo" {
		t.Errorf("phase = %s %s", ph.Func, ph.Name)
	}
	wantObj := ObjectReference{Kind: "Secret", Name: "{{ .StatefulSet.Name }}", Namespace: "{{ .StatefulSet.Namespace }}"}
	if got := ph.Objects["mongoDbSecret"]; got != wantObj {
		t.Errorf("object = %+v, want %+v", got, wantObj)
	}
	cmd, ok := ph.Args["command"].([]any)
	if !ok || len(cmd) != 7 || cmd[0] != "bash" {
		t.Errorf("command = %#v", ph.Args["command"])
	}
}

// The three inputs a Blueprint arrives as decode to the same value: YAML,
// JSON, and unstructured content from a dynamic client (which uses int64).
func TestParseFormsAgree(t *testing.T) {
	yamlDoc := blueprintWith(`
- func: KubeExecAll
  name: pause
  args:
    namespace: ns
    pods: a b
    containers: c
    command: [redis-cli, CLIENT, PAUSE, 30000, WRITE]
    extra: {ratio: 0.5, enabled: true, none: null}
`)
	fromYAML := mustParse(t, yamlDoc)

	var generic map[string]any
	if err := json.Unmarshal(mustYAMLToJSON(t, yamlDoc), &generic); err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(generic)
	fromJSON, err := Parse(js)
	if err != nil {
		t.Fatalf("Parse(json): %v", err)
	}

	unstructured := map[string]any{
		"apiVersion": "freezeframe.io/v1alpha1",
		"kind":       "Blueprint",
		"metadata":   map[string]any{"name": "bp"},
		"actions": map[string]any{
			"backupPrehook": map[string]any{
				"phases": []any{map[string]any{
					"func": "KubeExecAll",
					"name": "pause",
					"args": map[string]any{
						"namespace":  "ns",
						"pods":       "a b",
						"containers": "c",
						"command":    []any{"redis-cli", "CLIENT", "PAUSE", int64(30000), "WRITE"},
						"extra":      map[string]any{"ratio": 0.5, "enabled": true, "none": nil},
					},
				}},
			},
		},
	}
	fromUnstructured, err := FromUnstructured(unstructured)
	if err != nil {
		t.Fatalf("FromUnstructured: %v", err)
	}

	for name, got := range map[string]*Blueprint{"json": fromJSON, "unstructured": fromUnstructured} {
		if !reflect.DeepEqual(got, fromYAML) {
			t.Errorf("%s: %+v\nyaml: %+v", name, got.Actions[ActionPrehook].Phases[0], fromYAML.Actions[ActionPrehook].Phases[0])
		}
	}
	if n := fromYAML.Actions[ActionPrehook].Phases[0].Args["command"].([]any)[3]; n != int64(30000) {
		t.Errorf("number decoded as %T %v, want int64", n, n)
	}
}

func mustYAMLToJSON(t *testing.T, doc string) []byte {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		want      string
	}{
		{"not yaml", "a: [b", "decode yaml"},
		{"wrong kind", "apiVersion: cr.kanister.io/v1alpha1\nkind: ActionSet\nmetadata: {name: x}\n", `kind: kind is "ActionSet", want Blueprint`},
		{"wrong group", "apiVersion: example.com/v1\nkind: Blueprint\nmetadata: {name: x}\n", `blueprint x: apiVersion: apiVersion "example.com/v1" is neither`},
		{"phases not a list", "apiVersion: cr.kanister.io/v1alpha1\nkind: Blueprint\nmetadata: {name: x}\nactions:\n  backupPrehook:\n    phases: nope\n", "decode blueprint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %T, want *Error", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestActionLookup(t *testing.T) {
	bp := mustParseFile(t, "mongo-hooks.yaml")
	t.Run("known", func(t *testing.T) {
		a := mustAction(t, bp, ActionPosthook)
		if a.Phases[0].blueprint != "mongo-hooks" || a.Phases[0].action != ActionPosthook {
			t.Errorf("phase context = %q/%q", a.Phases[0].blueprint, a.Phases[0].action)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		_, err := bp.Action("backup")
		if !errors.Is(err, ErrUnknownAction) {
			t.Fatalf("err = %v, want ErrUnknownAction", err)
		}
		want := "blueprint mongo-hooks: action backup: not defined in the blueprint (defined: backupPosthook, backupPrehook)"
		if err.Error() != want {
			t.Errorf("err = %q, want %q", err, want)
		}
	})
	t.Run("built in Go", func(t *testing.T) {
		b := &Blueprint{Name: "go", Actions: map[string]*Action{ActionPrehook: {Phases: []Phase{{Func: "Nope", Name: "p"}}}}}
		ph := mustAction(t, b, ActionPrehook).Phases[0]
		_, err := ph.ExecSpec(map[string]any{})
		want := `blueprint go: action backupPrehook: phase p: func: "Nope" is not supported (want KubeExec or KubeExecAll)`
		if err == nil || err.Error() != want {
			t.Errorf("err = %v, want %q", err, want)
		}
	})
}

func TestTestdataParses(t *testing.T) {
	// Blueprints only: testdata/fuzz holds the fuzz corpus.
	files, err := filepath.Glob(filepath.Join("testdata", "*.*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			bp, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			if err := bp.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}
