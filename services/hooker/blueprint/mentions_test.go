package blueprint

import "testing"

func TestActionMentions(t *testing.T) {
	a := &Action{
		Phases: []Phase{{Func: FuncKubeExec, Name: "p", Args: map[string]any{
			"command": []any{"sh", "-c", "echo {{ .Deployment.Name }}"},
			"nested":  map[string]any{"deep": []any{"{{ .Object.spec.replicas }}"}},
		}}},
		DeferPhase: &Phase{Func: FuncKubeExec, Name: "d", Objects: map[string]ObjectReference{"s": {Kind: "Secret", Name: "{{ .Options.secret }}"}}},
	}
	for word, want := range map[string]bool{"Object": true, "Deployment": true, "Options": true, "StatefulSet": false} {
		if got := a.Mentions(word); got != want {
			t.Errorf("Mentions(%q) = %v, want %v", word, got, want)
		}
	}
	var none *Action
	if none.Mentions("Object") {
		t.Error("a nil action mentions something")
	}
}
