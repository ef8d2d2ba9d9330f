package blueprint

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func testParams() Params {
	return Params{
		StatefulSet: &WorkloadParams{
			Name:                   "redis",
			Namespace:              "cache",
			Pods:                   []string{"redis-0", "redis-1"},
			Containers:             [][]string{{"redis", "exporter"}, {"redis", "exporter"}},
			PersistentVolumeClaims: map[string]map[string]string{"redis-0": {"data-redis-0": "/data"}},
		},
		Namespace: NamespaceParams{Name: "cache"},
		Object:    map[string]any{"metadata": map[string]any{"name": "redis", "labels": map[string]any{"app": "redis"}}},
		Time:      "2026-03-14T15:09:26.535897932Z",
		Options:   map[string]string{"pauseMs": "30000"},
		Phases: map[string]*PhaseParams{
			"prev": {
				Secrets:    map[string]Secret{"auth": {Name: "redis", Namespace: "cache", Data: map[string][]byte{"password": []byte("hunter2")}}},
				ConfigMaps: map[string]ConfigMap{"cfg": {Name: "cfg", Namespace: "cache", Data: map[string]string{"mode": "fast"}}},
				Output:     map[string]any{"token": "abc123"},
			},
		},
		DeferPhase: &PhaseParams{Output: map[string]any{"done": "yes"}},
	}
}

func phaseWithArgs(args map[string]any) Phase {
	return Phase{Func: FuncKubeExec, Name: "p", Args: args, blueprint: "bp", action: ActionPrehook}
}

func TestRenderArgs(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want any
	}{
		{"literal", "redis-cli", "redis-cli"},
		{"first pod", "{{ index .StatefulSet.Pods 0 }}", "redis-0"},
		{"all pods", `{{ join " " .StatefulSet.Pods }}`, "redis-0 redis-1"},
		{"container of pod 1", "{{ index .StatefulSet.Containers 1 1 }}", "exporter"},
		{"pvc mount", `{{ index .StatefulSet.PersistentVolumeClaims "redis-0" "data-redis-0" }}`, "/data"},
		{"namespace", "{{ .Namespace.Name }}", "cache"},
		{"object", "{{ .Object.metadata.labels.app }}", "redis"},
		{"time with sprig", `{{ toDate "2006-01-02T15:04:05.999999999Z07:00" .Time | date "2006-01-02" }}`, "2026-03-14"},
		{"option", "{{ .Options.pauseMs }}", "30000"},
		{"secret", `{{ index .Phases.prev.Secrets.auth.Data "password" | toString }}`, "hunter2"},
		{"secret metadata", "{{ .Phases.prev.Secrets.auth.Namespace }}", "cache"},
		{"configmap", "{{ .Phases.prev.ConfigMaps.cfg.Data.mode }}", "fast"},
		{"output", "{{ .Phases.prev.Output.token }}", "abc123"},
		{"defer output", "{{ .DeferPhase.Output.done }}", "yes"},
		{"number untouched", int64(3), int64(3)},
		{"nested", map[string]any{"a": []any{"{{ .Namespace.Name }}", 1.5, true, nil}, "b": map[string]any{"c": "{{ .StatefulSet.Name | upper }}"}},
			map[string]any{"a": []any{"cache", 1.5, true, nil}, "b": map[string]any{"c": "REDIS"}}},
		{"Go string list", []string{"x", "{{ .Namespace.Name }}"}, []any{"x", "cache"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := phaseWithArgs(map[string]any{"v": tt.in}).RenderArgs(testParams())
			if err != nil {
				t.Fatalf("RenderArgs: %v", err)
			}
			if !reflect.DeepEqual(got["v"], tt.want) {
				t.Errorf("got %#v, want %#v", got["v"], tt.want)
			}
		})
	}
}

func TestRenderArgsErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    map[string]any
		params  func(*Params)
		wantIs  error
		wantMsg string // exact
	}{
		{
			name:    "missing key names the field",
			args:    map[string]any{"command": []any{"sh", "-c", "{{ .Phases.prev.Secrets.auth.Data.pasword | toString }}"}},
			wantIs:  ErrTemplate,
			wantMsg: `blueprint bp: action backupPrehook: phase p: args.command[2]: template: args.command[2]:1:10: executing "args.command[2]" at <.Phases.prev.Secrets.auth.Data.pasword>: map has no entry for key "pasword"`,
		},
		{
			name:    "index is strict",
			args:    map[string]any{"command": []any{`{{ index .Phases.prev.Secrets.auth.Data "pasword" | toString }}`}},
			wantIs:  ErrTemplate,
			wantMsg: `blueprint bp: action backupPrehook: phase p: args.command[0]: template: args.command[0]:1:3: executing "args.command[0]" at <index .Phases.prev.Secrets.auth.Data "pasword">: error calling index: map has no entry for key "pasword"`,
		},
		{
			name:    "index out of range",
			args:    map[string]any{"pod": "{{ index .StatefulSet.Pods 5 }}"},
			wantIs:  ErrTemplate,
			wantMsg: `blueprint bp: action backupPrehook: phase p: args.pod: template: args.pod:1:3: executing "args.pod" at <index .StatefulSet.Pods 5>: error calling index: index out of range: 5`,
		},
		{
			name:    "missing phase",
			args:    map[string]any{"x": map[string]any{"y": "{{ .Phases.nope.Output.k }}"}},
			wantIs:  ErrTemplate,
			wantMsg: `blueprint bp: action backupPrehook: phase p: args.x.y: template: args.x.y:1:10: executing "args.x.y" at <.Phases.nope.Output.k>: map has no entry for key "nope"`,
		},
		{
			name:    "workload of the other kind",
			args:    map[string]any{"pod": "{{ index .Deployment.Pods 0 }}"},
			wantIs:  ErrTemplate,
			wantMsg: `blueprint bp: action backupPrehook: phase p: args.pod: template: args.pod:1:20: executing "args.pod" at <.Deployment.Pods>: nil pointer evaluating *blueprint.WorkloadParams.Pods`,
		},
		{
			name:    "no secrets: function error details kept",
			args:    map[string]any{"t": `{{ .Options.pauseMs | mustToDate "2006" }}`},
			params:  func(p *Params) { p.Phases = nil },
			wantIs:  ErrTemplate,
			wantMsg: `blueprint bp: action backupPrehook: phase p: args.t: template: args.t:1:22: executing "args.t" at <mustToDate "2006">: error calling mustToDate: parsing time "30000": extra text: "0"`,
		},
		{
			name:    "secrets present: function error details withheld",
			args:    map[string]any{"t": `{{ .Options.pauseMs | mustToDate "2006" }}`},
			wantIs:  ErrTemplate,
			wantMsg: `blueprint bp: action backupPrehook: phase p: args.t: template: args.t:1:22: executing "args.t" at <mustToDate "2006">: error calling mustToDate: [details withheld: they may contain a Secret value]`,
		},
		{
			name:    "fail keeps the author's message",
			args:    map[string]any{"t": `{{ if not (hasKey .Object "spec") }}{{ fail "workload has no spec" }}{{ end }}`},
			wantIs:  ErrTemplate,
			wantMsg: `blueprint bp: action backupPrehook: phase p: args.t: template: args.t:1:39: executing "args.t" at <fail "workload has no spec">: error calling fail: workload has no spec`,
		},
		{
			name:    "unsupported Go value",
			args:    map[string]any{"x": struct{}{}},
			wantIs:  ErrBadArg,
			wantMsg: "blueprint bp: action backupPrehook: phase p: args.x: unsupported value of type struct {}",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := testParams()
			if tt.params != nil {
				tt.params(&params)
			}
			_, err := phaseWithArgs(tt.args).RenderArgs(params)
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("err = %v, want %v", err, tt.wantIs)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err is %T, want *Error", err)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("err =\n%s\nwant\n%s", err, tt.wantMsg)
			}
			assertNoSecret(t, err, "hunter2")
		})
	}
}

func TestRenderObjects(t *testing.T) {
	tests := []struct {
		name    string
		objects map[string]ObjectReference
		want    map[string]ObjectReference
		wantErr string
	}{
		{
			name: "templated name and namespace",
			objects: map[string]ObjectReference{
				"auth": {Kind: "Secret", Name: "{{ .StatefulSet.Name }}-auth", Namespace: "{{ .StatefulSet.Namespace }}"},
				"cfg":  {APIVersion: "v1", Kind: "ConfigMap", Name: "static", Namespace: "{{ .Namespace.Name }}"},
			},
			want: map[string]ObjectReference{
				"auth": {Kind: "Secret", Name: "redis-auth", Namespace: "cache"},
				"cfg":  {APIVersion: "v1", Kind: "ConfigMap", Name: "static", Namespace: "cache"},
			},
		},
		{
			name:    "missing key in an object name",
			objects: map[string]ObjectReference{"auth": {Kind: "Secret", Name: `{{ .Options.nothing | default "" }}`, Namespace: "x"}},
			wantErr: "blueprint bp: action backupPrehook: phase p: objects.auth.name: template: objects.auth.name:1:11: executing \"objects.auth.name\" at <.Options.nothing>: map has no entry for key \"nothing\"",
		},
		{
			name:    "empty after rendering",
			objects: map[string]ObjectReference{"auth": {Kind: "Secret", Name: `{{ "" }}`, Namespace: "x"}},
			wantErr: "blueprint bp: action backupPrehook: phase p: objects.auth.name: renders empty",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ph := phaseWithArgs(nil)
			ph.Objects = tt.objects
			got, err := ph.RenderObjects(testParams())
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("RenderObjects: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The functions removed from sprig must not be reachable at render time
// either (a Phase built in Go skips Validate).
func TestRenderHasNoEnv(t *testing.T) {
	for _, fn := range []string{`{{ env "HOME" }}`, `{{ expandenv "$HOME" }}`, `{{ getHostByName "localhost" }}`} {
		t.Run(fn, func(t *testing.T) {
			_, err := phaseWithArgs(map[string]any{"x": fn}).RenderArgs(testParams())
			if !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), "not defined") {
				t.Errorf("err = %v, want function not defined", err)
			}
		})
	}
}

func TestSecretValues(t *testing.T) {
	p := testParams()
	p.Phases["other"] = &PhaseParams{Secrets: map[string]Secret{"s": {Data: map[string][]byte{"a": []byte("x"), "empty": nil}}}}
	got := map[string]bool{}
	for _, v := range p.SecretValues() {
		got[string(v)] = true
	}
	if !reflect.DeepEqual(got, map[string]bool{"hunter2": true, "x": true}) {
		t.Errorf("SecretValues = %v", got)
	}
}
