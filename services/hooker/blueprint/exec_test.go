package blueprint

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExecSpec(t *testing.T) {
	cmd := []any{"redis-cli", "CLIENT", "PAUSE", int64(30000), "WRITE"}
	tests := []struct {
		name string
		fn   string
		args map[string]any
		want ExecSpec
	}{
		{
			name: "KubeExec",
			fn:   FuncKubeExec,
			args: map[string]any{"namespace": "cache", "pod": "redis-0", "container": "redis", "command": cmd},
			want: ExecSpec{Namespace: "cache", Pods: []string{"redis-0"}, Containers: []string{"redis"}, Command: []string{"redis-cli", "CLIENT", "PAUSE", "30000", "WRITE"}},
		},
		{
			name: "KubeExecAll splits on whitespace",
			fn:   FuncKubeExecAll,
			args: map[string]any{"namespace": "cache", "pods": " redis-0  redis-1\tredis-2\n", "containers": "redis exporter", "command": cmd},
			want: ExecSpec{Namespace: "cache", Pods: []string{"redis-0", "redis-1", "redis-2"}, Containers: []string{"redis", "exporter"}, Command: []string{"redis-cli", "CLIENT", "PAUSE", "30000", "WRITE"}},
		},
		{
			name: "KubeExecAll drops repeated names",
			fn:   FuncKubeExecAll,
			args: map[string]any{"namespace": "db", "pods": "mongo-0 mongo-1 mongo-0", "containers": "mongodb mongodb", "command": []any{"true"}},
			want: ExecSpec{Namespace: "db", Pods: []string{"mongo-0", "mongo-1"}, Containers: []string{"mongodb"}, Command: []string{"true"}},
		},
		{
			name: "KubeExecAll with one pod",
			fn:   FuncKubeExecAll,
			args: map[string]any{"namespace": "db", "pods": "mongo-0", "containers": "mongodb", "command": []string{"true"}},
			want: ExecSpec{Namespace: "db", Pods: []string{"mongo-0"}, Containers: []string{"mongodb"}, Command: []string{"true"}},
		},
		{
			name: "timeout",
			fn:   FuncKubeExec,
			args: map[string]any{"namespace": "ns", "pod": "p.x-1", "container": "c", "command": []any{"true"}, "timeout": "1m30s"},
			want: ExecSpec{Namespace: "ns", Pods: []string{"p.x-1"}, Containers: []string{"c"}, Command: []string{"true"}, Timeout: 90 * time.Second},
		},
		{
			name: "empty timeout is the caller's default",
			fn:   FuncKubeExec,
			args: map[string]any{"namespace": "ns", "pod": "p", "container": "c", "command": []any{"true", 1.5, false}, "timeout": ""},
			want: ExecSpec{Namespace: "ns", Pods: []string{"p"}, Containers: []string{"c"}, Command: []string{"true", "1.5", "false"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Phase{Func: tt.fn, Name: "p"}.ExecSpec(tt.args)
			if err != nil {
				t.Fatalf("ExecSpec: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

// A KubeExecAll phase through the whole path: the pod list comes from the
// workload's pods.
func TestKubeExecAllRendered(t *testing.T) {
	bp := mustParse(t, blueprintWith(`
- func: KubeExecAll
  name: pause
  args:
    namespace: "{{ .StatefulSet.Namespace }}"
    pods: '{{ join " " .StatefulSet.Pods }}'
    containers: "{{ index .StatefulSet.Containers 0 0 }}"
    command: [redis-cli, CLIENT, PAUSE, "{{ .Options.pauseMs }}", WRITE]
`))
	if err := bp.Validate(); err != nil {
		t.Fatal(err)
	}
	ph := mustAction(t, bp, ActionPrehook).Phases[0]
	args, err := ph.RenderArgs(testParams())
	if err != nil {
		t.Fatal(err)
	}
	got, err := ph.ExecSpec(args)
	if err != nil {
		t.Fatal(err)
	}
	want := ExecSpec{Namespace: "cache", Pods: []string{"redis-0", "redis-1"}, Containers: []string{"redis"}, Command: []string{"redis-cli", "CLIENT", "PAUSE", "30000", "WRITE"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v\nwant %#v", got, want)
	}
}

func TestExecSpecErrors(t *testing.T) {
	const secret = "hunter2"
	base := func(fn string, override map[string]any) map[string]any {
		args := map[string]any{"namespace": "ns", "command": []any{"true"}}
		if fn == FuncKubeExec {
			args["pod"], args["container"] = "p", "c"
		} else {
			args["pods"], args["containers"] = "p", "c"
		}
		for k, v := range override {
			if v == nil {
				delete(args, k)
			} else {
				args[k] = v
			}
		}
		return args
	}
	tests := []struct {
		name    string
		fn      string
		args    map[string]any
		wantIs  error
		wantMsg string
	}{
		{"unknown func", "KubeTask", map[string]any{}, ErrUnknownFunc, `phase p: func: "KubeTask" is not supported (want KubeExec or KubeExecAll)`},
		{"missing command", FuncKubeExec, base(FuncKubeExec, map[string]any{"command": nil}), ErrMissingArg, "phase p: args.command: required by KubeExec"},
		{"empty command", FuncKubeExec, base(FuncKubeExec, map[string]any{"command": []any{}}), ErrMissingArg, "phase p: args.command: empty list"},
		{"pods on KubeExec", FuncKubeExec, base(FuncKubeExec, map[string]any{"pods": "a b"}), ErrUnknownArg, `phase p: args.pods: KubeExec does not take "pods" (KubeExecAll does)`},
		{"pod is a list", FuncKubeExec, base(FuncKubeExec, map[string]any{"pod": []any{"a"}}), ErrBadArg, "phase p: args.pod: want a string, got a list"},
		{"pod renders empty", FuncKubeExec, base(FuncKubeExec, map[string]any{"pod": " "}), ErrMissingArg, "phase p: args.pod: renders empty"},
		{"pods render empty", FuncKubeExecAll, base(FuncKubeExecAll, map[string]any{"pods": ""}), ErrMissingArg, "phase p: args.pods: renders empty"},
		{"pods printed as a Go slice", FuncKubeExecAll, base(FuncKubeExecAll, map[string]any{"pods": "[redis-0 redis-1]"}), ErrBadArg,
			`phase p: args.pods: item 0 is not a valid Kubernetes name (a template printed a list; use {{ join " " .StatefulSet.Pods }} or index)`},
		{"secret in namespace is not quoted", FuncKubeExec, base(FuncKubeExec, map[string]any{"namespace": "x " + secret}), ErrBadArg, "phase p: args.namespace: not a valid Kubernetes name"},
		{"container with a dot", FuncKubeExec, base(FuncKubeExec, map[string]any{"container": "a.b"}), ErrBadArg, "phase p: args.container: not a valid Kubernetes name"},
		{"command item is a map", FuncKubeExecAll, base(FuncKubeExecAll, map[string]any{"command": []any{"sh", map[string]any{"a": secret}}}), ErrBadArg, "phase p: args.command[1]: want a string, got a map"},
		{"bad timeout", FuncKubeExec, base(FuncKubeExec, map[string]any{"timeout": secret}), ErrBadArg, `phase p: args.timeout: not a Go duration (such as "30s" or "5m")`},
		{"negative timeout", FuncKubeExec, base(FuncKubeExec, map[string]any{"timeout": "-5s"}), ErrBadArg, "phase p: args.timeout: negative duration"},
		{"timeout as a number", FuncKubeExec, base(FuncKubeExec, map[string]any{"timeout": int64(30)}), ErrBadArg, "phase p: args.timeout: want a string, got a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Phase{Func: tt.fn, Name: "p"}.ExecSpec(tt.args)
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("err = %v, want %v", err, tt.wantIs)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("err =\n%s\nwant\n%s", err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error quotes an argument value: %v", err)
			}
		})
	}
}
