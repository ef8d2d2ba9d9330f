package blueprint

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sessionPhase is a valid KubeExecSession phase; cases below vary it.
const sessionPhase = `
- func: KubeExecSession
  name: lockTables
  args:
    namespace: "{{ .StatefulSet.Namespace }}"
    pod: "{{ index .StatefulSet.Pods 0 }}"
    container: mariadb
    command: [mariadb, -N, --unbuffered]
    stdin: "FLUSH TABLES WITH READ LOCK; SELECT 'FREEZEFRAME-LOCKED';"
    readyPattern: FREEZEFRAME-LOCKED
    releaseInput: "UNLOCK TABLES;"
    timeout: 20s
`

// The MariaDB example of the README, end to end.
func TestSessionSpecMariaDBExample(t *testing.T) {
	bp := mustParseFile(t, "mariadb-session.yaml")
	if err := bp.Validate(ActionPrehook); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	ph := mustAction(t, bp, ActionPrehook).Phases[0]
	args, err := ph.RenderArgs(testParams())
	if err != nil {
		t.Fatalf("RenderArgs: %v", err)
	}
	got, err := ph.SessionSpec(args)
	if err != nil {
		t.Fatalf("SessionSpec: %v", err)
	}
	if got.ReadyPattern.String() != "(?m)^FREEZEFRAME-LOCKED$" {
		t.Errorf("ReadyPattern = %q", got.ReadyPattern)
	}
	got.ReadyPattern = nil
	want := SessionSpec{
		Namespace: "cache", Pod: "redis-0", Container: "mariadb",
		Command:      []string{"sh", "-c", `exec mariadb -uroot -p"$MARIADB_ROOT_PASSWORD" -N --unbuffered`},
		Stdin:        "FLUSH TABLES WITH READ LOCK;\nSELECT 'FREEZEFRAME-LOCKED';\n",
		ReleaseInput: "UNLOCK TABLES;\n",
		Timeout:      30 * time.Second,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
}

func TestSessionSpec(t *testing.T) {
	tests := []struct {
		name   string
		modify func(args map[string]any)
		want   SessionSpec
	}{
		{
			name: "newlines added",
			want: SessionSpec{Stdin: "FLUSH TABLES WITH READ LOCK; SELECT 'FREEZEFRAME-LOCKED';\n", ReleaseInput: "UNLOCK TABLES;\n", Timeout: 20 * time.Second},
		},
		{
			name:   "empty release input: closing stdin releases",
			modify: func(a map[string]any) { a["releaseInput"] = "" },
			want:   SessionSpec{Stdin: "FLUSH TABLES WITH READ LOCK; SELECT 'FREEZEFRAME-LOCKED';\n", Timeout: 20 * time.Second},
		},
		{
			name:   "no timeout is the caller's default",
			modify: func(a map[string]any) { delete(a, "timeout"); a["stdin"] = "LOCK;\n" },
			want:   SessionSpec{Stdin: "LOCK;\n", ReleaseInput: "UNLOCK TABLES;\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bp := mustParse(t, blueprintWith(sessionPhase))
			ph := mustAction(t, bp, ActionPrehook).Phases[0]
			args, err := ph.RenderArgs(testParams())
			if err != nil {
				t.Fatal(err)
			}
			if tt.modify != nil {
				tt.modify(args)
			}
			got, err := ph.SessionSpec(args)
			if err != nil {
				t.Fatalf("SessionSpec: %v", err)
			}
			if !got.ReadyPattern.MatchString("x\nFREEZEFRAME-LOCKED\n") {
				t.Errorf("ReadyPattern %q does not match the ready line", got.ReadyPattern)
			}
			tt.want.Namespace, tt.want.Pod, tt.want.Container = "cache", "redis-0", "mariadb"
			tt.want.Command = []string{"mariadb", "-N", "--unbuffered"}
			got.ReadyPattern = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestSessionSpecErrors(t *testing.T) {
	const secret = "hunter2"
	base := func(override map[string]any) map[string]any {
		args := map[string]any{
			"namespace": "db", "pod": "mariadb-0", "container": "mariadb", "command": []any{"mariadb", "-N"},
			"stdin": "FLUSH TABLES WITH READ LOCK; SELECT 'OK';", "readyPattern": "OK", "releaseInput": "UNLOCK TABLES;",
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
		{"not a session phase", FuncKubeExec, base(nil), ErrUnknownFunc, `phase p: func: "KubeExec" is not KubeExecSession: decode it with ExecSpec`},
		{"missing stdin", FuncKubeExecSession, base(map[string]any{"stdin": nil}), ErrMissingArg, "phase p: args.stdin: required by KubeExecSession"},
		{"missing readyPattern", FuncKubeExecSession, base(map[string]any{"readyPattern": nil}), ErrMissingArg, "phase p: args.readyPattern: required by KubeExecSession"},
		{"missing releaseInput", FuncKubeExecSession, base(map[string]any{"releaseInput": nil}), ErrMissingArg, "phase p: args.releaseInput: required by KubeExecSession"},
		{"stdin renders empty", FuncKubeExecSession, base(map[string]any{"stdin": " \n"}), ErrMissingArg, "phase p: args.stdin: empty (it is what takes the lock)"},
		{"readyPattern renders empty", FuncKubeExecSession, base(map[string]any{"readyPattern": ""}), ErrMissingArg, "phase p: args.readyPattern: renders empty"},
		{"readyPattern does not compile, and is not quoted", FuncKubeExecSession, base(map[string]any{"readyPattern": "(" + secret}), ErrBadArg, "phase p: args.readyPattern: not a Go regexp: missing closing )"},
		{"readyPattern matches empty output", FuncKubeExecSession, base(map[string]any{"readyPattern": "(" + secret + ")?"}), ErrBadArg,
			"phase p: args.readyPattern: matches empty output, so the lock would count as taken before the command printed anything"},
		{"stdin is a list", FuncKubeExecSession, base(map[string]any{"stdin": []any{"a"}}), ErrBadArg, "phase p: args.stdin: want a string, got a list"},
		{"pods instead of pod", FuncKubeExecSession, base(map[string]any{"pods": "a b"}), ErrUnknownArg, `phase p: args.pods: KubeExecSession does not take "pods" (KubeExecAll does)`},
		{"secret in pod is not quoted", FuncKubeExecSession, base(map[string]any{"pod": "x " + secret}), ErrBadArg, "phase p: args.pod: not a valid Kubernetes name"},
		{"bad timeout", FuncKubeExecSession, base(map[string]any{"timeout": secret}), ErrBadArg, `phase p: args.timeout: not a Go duration (such as "30s" or "5m")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Phase{Func: tt.fn, Name: "p"}.SessionSpec(tt.args)
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("err = %v, want %v", err, tt.wantIs)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("err =\n%s\nwant\n%s", err, tt.wantMsg)
			}
			assertNoSecret(t, err, secret)
		})
	}
}

// A session phase run as a one-shot exec would take the lock and drop it at
// once; ExecSpec refuses it, and points KubeExec users at the session func.
func TestExecSpecAndSessionFuncs(t *testing.T) {
	_, err := Phase{Func: FuncKubeExecSession, Name: "p"}.ExecSpec(map[string]any{})
	if !errors.Is(err, ErrUnknownFunc) || !strings.Contains(err.Error(), "decode it with SessionSpec") {
		t.Errorf("ExecSpec of a session phase: %v", err)
	}
	_, err = Phase{Func: FuncKubeExec, Name: "p"}.ExecSpec(map[string]any{
		"namespace": "db", "pod": "p", "container": "c", "command": []any{"mariadb"}, "stdin": "LOCK;",
	})
	want := `phase p: args.stdin: KubeExec does not take "stdin" (KubeExecSession does)`
	if !errors.Is(err, ErrUnknownArg) || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

func TestValidateSession(t *testing.T) {
	withAction := func(action, phases string) string {
		return strings.Replace(blueprintWith(phases), "  backupPrehook:\n", "  "+action+":\n", 1)
	}
	tests := []struct {
		name    string
		doc     string
		wantIs  error // nil: valid
		wantMsg string
	}{
		{name: "valid", doc: blueprintWith(sessionPhase)},
		{name: "templated readyPattern is checked at render", doc: blueprintWith(strings.Replace(sessionPhase, "readyPattern: FREEZEFRAME-LOCKED", `readyPattern: "{{ .Options.ready }}"`, 1))},
		{
			name:    "in the post-hook",
			doc:     withAction(ActionPosthook, sessionPhase),
			wantIs:  ErrInvalid,
			wantMsg: "blueprint bp: action backupPosthook: phase lockTables: func: KubeExecSession runs only in backupPrehook: the session it opens is held until backupPosthook",
		},
		{
			name:    "as the pre-hook's defer phase",
			doc:     strings.Replace(blueprintWith(strings.Replace(sessionPhase, "- func", "  func", 1)), "    phases:\n", "    deferPhase:\n", 1),
			wantIs:  ErrInvalid,
			wantMsg: "blueprint bp: action backupPrehook: phase lockTables: func: KubeExecSession cannot be a deferPhase: the session must open before the snapshot, not after the pre-hook",
		},
		{
			name:    "bad readyPattern",
			doc:     blueprintWith(strings.Replace(sessionPhase, "readyPattern: FREEZEFRAME-LOCKED", `readyPattern: "[A-"`, 1)),
			wantIs:  ErrBadArg,
			wantMsg: "blueprint bp: action backupPrehook: phase lockTables: args.readyPattern: not a Go regexp: missing closing ]",
		},
		{
			name:    "readyPattern that matches anything",
			doc:     blueprintWith(strings.Replace(sessionPhase, "readyPattern: FREEZEFRAME-LOCKED", `readyPattern: ".*"`, 1)),
			wantIs:  ErrBadArg,
			wantMsg: "blueprint bp: action backupPrehook: phase lockTables: args.readyPattern: matches empty output, so the lock would count as taken before the command printed anything",
		},
		{
			name:    "empty stdin",
			doc:     blueprintWith(strings.Replace(sessionPhase, `stdin: "FLUSH TABLES WITH READ LOCK; SELECT 'FREEZEFRAME-LOCKED';"`, `stdin: ""`, 1)),
			wantIs:  ErrMissingArg,
			wantMsg: "blueprint bp: action backupPrehook: phase lockTables: args.stdin: empty (it is what takes the lock)",
		},
		{
			name:    "missing releaseInput",
			doc:     blueprintWith(strings.Replace(sessionPhase, `    releaseInput: "UNLOCK TABLES;"`+"\n", "", 1)),
			wantIs:  ErrMissingArg,
			wantMsg: "blueprint bp: action backupPrehook: phase lockTables: args.releaseInput: required by KubeExecSession",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mustParse(t, tt.doc).Validate()
			if tt.wantIs == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("err = %v, want %v", err, tt.wantIs)
			}
			if errs := blueprintErrors(err); len(errs) == 0 || errs[0].Error() != tt.wantMsg {
				t.Errorf("err =\n%v\nwant first\n%s", err, tt.wantMsg)
			}
		})
	}
}
