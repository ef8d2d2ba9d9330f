package blueprint

import (
	"errors"
	"strings"
	"testing"
)

// lockPhase is a valid KubeExec phase; cases below vary it.
const lockPhase = `
- func: KubeExec
  name: lock
  objects:
    creds: {kind: Secret, name: "{{ .StatefulSet.Name }}", namespace: "{{ .StatefulSet.Namespace }}"}
  args:
    namespace: "{{ .StatefulSet.Namespace }}"
    pod: "{{ index .StatefulSet.Pods 0 }}"
    container: db
    command: [sh, -c, 'lock --password "{{ index .Phases.lock.Secrets.creds.Data "pw" | toString }}"']
`

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		actions []string
		wantIs  error  // nil: valid
		wantMsg string // exact message of the first *Error
	}{
		{
			name: "valid",
			doc:  blueprintWith(lockPhase),
		},
		{
			name: "valid KubeExecAll with timeout and a later phase reading an earlier one",
			doc: blueprintWith(`
- func: KubeExecAll
  name: first
  objects:
    cfg: {kind: ConfigMap, name: cfg, namespace: ns}
  args:
    namespace: ns
    pods: '{{ join " " .StatefulSet.Pods }}'
    containers: db sidecar
    command: [echo, '{{ .Phases.first.ConfigMaps.cfg.Data.mode }}']
    timeout: 90s
- func: KubeExec
  name: second
  args:
    namespace: ns
    pod: p
    container: c
    command: [echo, '{{ .Phases.first.Output.token }}', '{{ range .Options }}{{ .Phases }}{{ end }}']
`),
		},
		{
			name:    "unknown func",
			doc:     blueprintWith(strings.Replace(lockPhase, "func: KubeExec", "func: KubeTask", 1)),
			wantIs:  ErrUnknownFunc,
			wantMsg: `blueprint bp: action backupPrehook: phase lock: func: "KubeTask" is not supported (want KubeExec or KubeExecAll)`,
		},
		{
			name:    "missing arg",
			doc:     blueprintWith(strings.Replace(lockPhase, "    container: db\n", "", 1)),
			wantIs:  ErrMissingArg,
			wantMsg: "blueprint bp: action backupPrehook: phase lock: args.container: required by KubeExec",
		},
		{
			name:    "arg of the other exec func",
			doc:     blueprintWith(strings.Replace(lockPhase, "pod: ", "pods: ", 1)),
			wantIs:  ErrMissingArg, // pod is missing, and pods is unknown
			wantMsg: "blueprint bp: action backupPrehook: phase lock: args.pod: required by KubeExec",
		},
		{
			name:    "bad template",
			doc:     blueprintWith(strings.Replace(lockPhase, `namespace: "{{ .StatefulSet.Namespace }}"`+"\n    pod", `namespace: "{{ .StatefulSet.Namespace "`+"\n    pod", 1)),
			wantIs:  ErrTemplate,
			wantMsg: "blueprint bp: action backupPrehook: phase lock: args.namespace: template: args.namespace:1: unclosed action",
		},
		{
			name:    "env is not available",
			doc:     blueprintWith(strings.Replace(lockPhase, "container: db", `container: '{{ env "HOME" }}'`, 1)),
			wantIs:  ErrTemplate,
			wantMsg: `blueprint bp: action backupPrehook: phase lock: args.container: template: args.container:1: function "env" not defined`,
		},
		{
			name:    "unknown action",
			doc:     blueprintWith(lockPhase),
			actions: []string{ActionPrehook, ActionPosthook},
			wantIs:  ErrUnknownAction,
			wantMsg: "blueprint bp: action backupPosthook: not defined in the blueprint (defined: backupPrehook)",
		},
		{
			name:    "command is a string",
			doc:     blueprintWith("- func: KubeExec\n  name: lock\n  args: {namespace: ns, pod: p, container: c, command: 'mongosh --eval x'}"),
			wantIs:  ErrBadArg,
			wantMsg: "blueprint bp: action backupPrehook: phase lock: args.command: want a list of strings, got a string",
		},
		{
			name:    "command item is a map",
			doc:     blueprintWith(strings.Replace(lockPhase, "command: [sh, -c, ", "command: [sh, {a: b}, ", 1)),
			wantIs:  ErrBadArg,
			wantMsg: "blueprint bp: action backupPrehook: phase lock: args.command[1]: want a string, got a map",
		},
		{
			name:    "bad timeout",
			doc:     blueprintWith(lockPhase + "    timeout: 5 minutes\n"),
			wantIs:  ErrBadArg,
			wantMsg: `blueprint bp: action backupPrehook: phase lock: args.timeout: not a Go duration (such as "30s" or "5m")`,
		},
		{
			name:    "object kind",
			doc:     blueprintWith(strings.Replace(lockPhase, "kind: Secret", "kind: Deployment", 1)),
			wantIs:  ErrInvalid,
			wantMsg: `blueprint bp: action backupPrehook: phase lock: objects.creds.kind: kind "Deployment" is not supported (want Secret or ConfigMap)`,
		},
		{
			name:    "object without namespace",
			doc:     blueprintWith(strings.Replace(lockPhase, `, namespace: "{{ .StatefulSet.Namespace }}"}`, "}", 1)),
			wantIs:  ErrMissingArg,
			wantMsg: "blueprint bp: action backupPrehook: phase lock: objects.creds.namespace: required",
		},
		{
			name:    "reference to an unknown phase",
			doc:     blueprintWith(strings.Replace(lockPhase, ".Phases.lock.", ".Phases.lok.", 1)),
			wantIs:  ErrTemplate,
			wantMsg: `blueprint bp: action backupPrehook: phase lock: args.command[2]: .Phases.lok.Secrets.creds: no phase "lok" at or before this one in the action (have: lock)`,
		},
		{
			name:    "reference to an unknown object",
			doc:     blueprintWith(strings.Replace(lockPhase, ".Secrets.creds.", ".Secrets.cred.", 1)),
			wantIs:  ErrTemplate,
			wantMsg: `blueprint bp: action backupPrehook: phase lock: args.command[2]: .Phases.lock.Secrets.cred: phase "lock" has no Secret object "cred"`,
		},
		{
			name:    "a Secret read as a ConfigMap",
			doc:     blueprintWith(strings.Replace(lockPhase, ".Secrets.creds.", ".ConfigMaps.creds.", 1)),
			wantIs:  ErrTemplate,
			wantMsg: `blueprint bp: action backupPrehook: phase lock: args.command[2]: .Phases.lock.ConfigMaps.creds: phase "lock" has no ConfigMap object "creds"`,
		},
		{
			name: "reference to a later phase",
			doc: blueprintWith(`
- func: KubeExec
  name: early
  args: {namespace: ns, pod: p, container: c, command: [echo, '{{ $.Phases.late.Output.x }}']}
- func: KubeExec
  name: late
  args: {namespace: ns, pod: p, container: c, command: [echo]}
`),
			wantIs:  ErrTemplate,
			wantMsg: `blueprint bp: action backupPrehook: phase early: args.command[1]: .Phases.late.Output.x: no phase "late" at or before this one in the action (have: early)`,
		},
		{
			name: "unnamed phase",
			doc: blueprintWith(`
- func: KubeExec
  args: {namespace: ns, pod: p, container: c, command: [echo]}
`),
			wantIs:  ErrInvalid,
			wantMsg: "blueprint bp: action backupPrehook: phase phases[0]: name: phase has no name",
		},
		{
			name: "duplicate phase name",
			doc: blueprintWith(`
- func: KubeExec
  name: p
  args: {namespace: ns, pod: p, container: c, command: [echo]}
- func: KubeExec
  name: p
  args: {namespace: ns, pod: p, container: c, command: [echo]}
`),
			wantIs:  ErrInvalid,
			wantMsg: "blueprint bp: action backupPrehook: phase p: name: phase name is used twice in the action",
		},
		{
			name:    "action without phases",
			doc:     "apiVersion: freezeframe.io/v1alpha1\nkind: Blueprint\nmetadata: {name: bp}\nactions:\n  backupPrehook:\n",
			wantIs:  ErrInvalid,
			wantMsg: "blueprint bp: action backupPrehook: action has no phases",
		},
		{
			name:    "no name",
			doc:     strings.Replace(blueprintWith(lockPhase), "name: bp", "labels: {}", 1),
			wantIs:  ErrInvalid,
			wantMsg: "metadata.name: blueprint has no name",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bp := mustParse(t, tt.doc)
			err := bp.Validate(tt.actions...)
			if tt.wantIs == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("err = %v, want %v", err, tt.wantIs)
			}
			errs := blueprintErrors(err)
			if len(errs) == 0 {
				t.Fatalf("err = %T, holds no *Error", err)
			}
			if got := errs[0].Error(); got != tt.wantMsg {
				t.Errorf("first error =\n%s\nwant\n%s\n(all: %v)", got, tt.wantMsg, err)
			}
		})
	}
}

// A blueprint shared with Kanister carries actions freezeframe never runs.
func TestValidateOnlyNamedActions(t *testing.T) {
	doc := blueprintWith(lockPhase) + `  backupPosthook:
    phases:
    - func: KubeExec
      name: unlock
      args: {namespace: ns, pod: p, container: c, command: [unlock]}
  backup:
    phases:
    - func: BackupData
      name: dump
      args: {namespace: ns, pod: p, container: c, includePath: /data, backupArtifactPrefix: x}
`
	bp := mustParse(t, doc)
	if err := bp.Validate(ActionPrehook, ActionPosthook); err != nil {
		t.Errorf("Validate(pre, post): %v", err)
	}
	err := bp.Validate()
	if !errors.Is(err, ErrUnknownFunc) {
		t.Fatalf("Validate(): %v, want ErrUnknownFunc from the backup action", err)
	}
	var e *Error
	if errors.As(err, &e); e.Action != "backup" || e.Phase != "dump" {
		t.Errorf("error located at %q/%q", e.Action, e.Phase)
	}
}

// Every problem is reported at once, each located.
func TestValidateReportsAll(t *testing.T) {
	bp := mustParse(t, blueprintWith(`
- func: KubeExec
  name: a
  args: {namespace: ns, pods: p, container: c, command: [echo, '{{ .Nope']}
- func: Sleep
  name: b
`))
	err := bp.Validate()
	var got []string
	for _, e := range blueprintErrors(err) {
		got = append(got, e.Phase+" "+e.Field)
	}
	want := []string{"a args.pod", "a args.pods", "a args.command[1]", "b func"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("errors at %v, want %v\n%v", got, want, err)
	}
	for _, is := range []error{ErrMissingArg, ErrUnknownArg, ErrTemplate, ErrUnknownFunc} {
		if !errors.Is(err, is) {
			t.Errorf("errors.Is(err, %v) = false", is)
		}
	}
	if !strings.Contains(err.Error(), `args.pods: KubeExec does not take "pods" (KubeExecAll does)`) {
		t.Errorf("no hint for pods on KubeExec: %v", err)
	}
}
