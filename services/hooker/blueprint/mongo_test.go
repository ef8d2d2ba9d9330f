package blueprint

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The password has the characters that break naive quoting and escaping.
const mongoPassword = `Tr0ub4dor&3"x\y`

func mongoSecret(name, ns string) Secret {
	return Secret{Name: name, Namespace: ns, Type: "Opaque", Data: map[string][]byte{
		"mongodb-root-password":       []byte(mongoPassword),
		"mongodb-replica-set-key":     []byte("replkey"),
		"mongodb-metrics-password-xx": []byte("unused"),
	}}
}

// runMongoPhase does what the hooker does for one phase: render objects,
// "fetch" them, render args, decode the exec spec.
func runMongoPhase(t *testing.T, ph Phase, params Params) (map[string]ObjectReference, map[string]any, ExecSpec) {
	t.Helper()
	refs, err := ph.RenderObjects(params)
	if err != nil {
		t.Fatalf("RenderObjects: %v", err)
	}
	secrets := map[string]Secret{}
	for alias, ref := range refs {
		if ref.Kind != KindSecret {
			t.Fatalf("object %s: kind %q", alias, ref.Kind)
		}
		secrets[alias] = mongoSecret(ref.Name, ref.Namespace)
	}
	params.Phases[ph.Name] = &PhaseParams{Secrets: secrets}
	args, err := ph.RenderArgs(params)
	if err != nil {
		t.Fatalf("RenderArgs: %v", err)
	}
	spec, err := ph.ExecSpec(args)
	if err != nil {
		t.Fatalf("ExecSpec: %v", err)
	}
	return refs, args, spec
}

func TestMongoBitnamiStatefulSet(t *testing.T) {
	bp := mustParseFile(t, "mongo-hooks.yaml")
	if err := bp.Validate(ActionPrehook, ActionPosthook); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	sts := &WorkloadParams{
		Name:       "mongodb",
		Namespace:  "shop",
		Pods:       []string{"mongodb-0", "mongodb-1"},
		Containers: [][]string{{"mongodb", "metrics"}, {"mongodb", "metrics"}},
	}

	tests := []struct {
		action, phase, eval string
	}{
		{ActionPrehook, "lockMongo", "db.fsyncLock()"},
		{ActionPosthook, "unlockMongo", "db.fsyncUnlock()"},
	}
	for _, tt := range tests {
		t.Run(tt.action, func(t *testing.T) {
			params := Params{StatefulSet: sts, Namespace: NamespaceParams{Name: "shop"}, Phases: map[string]*PhaseParams{}}
			act := mustAction(t, bp, tt.action)
			if len(act.Phases) != 1 || act.DeferPhase != nil {
				t.Fatalf("phases: %+v", act)
			}
			refs, _, spec := runMongoPhase(t, act.Phases[0], params)

			wantRefs := map[string]ObjectReference{"mongoDbSecret": {Kind: "Secret", Name: "mongodb", Namespace: "shop"}}
			if !reflect.DeepEqual(refs, wantRefs) {
				t.Errorf("objects = %+v, want %+v", refs, wantRefs)
			}
			want := ExecSpec{
				Namespace:  "shop",
				Pods:       []string{"mongodb-0"},
				Containers: []string{"mongodb"},
				Command: []string{
					"bash", "-o", "errexit", "-o", "pipefail", "-c",
					"export MONGODB_ROOT_PASSWORD='" + mongoPassword + "'\n" +
						`mongosh --authenticationDatabase admin -u root -p "${MONGODB_ROOT_PASSWORD}" --eval="` + tt.eval + `"` + "\n",
				},
			}
			if !reflect.DeepEqual(spec, want) {
				t.Errorf("spec =\n%#v\nwant\n%#v", spec, want)
			}
		})
	}
}

func TestMongoDeploymentJSON(t *testing.T) {
	bp := mustParseFile(t, "mongo-hooks-deployment.json")
	if err := bp.Validate(ActionPrehook, ActionPosthook); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	dep := &WorkloadParams{Name: "mongo", Namespace: "db", Pods: []string{"mongo-7d9f8c-x2x4z"}, Containers: [][]string{{"mongodb"}}}

	tests := []struct {
		action, eval string
		timeout      time.Duration
	}{
		{ActionPrehook, "--eval=db.fsyncLock()", 45 * time.Second},
		{ActionPosthook, "--eval=db.fsyncUnlock()", 0},
	}
	for _, tt := range tests {
		t.Run(tt.action, func(t *testing.T) {
			params := Params{Deployment: dep, Phases: map[string]*PhaseParams{}}
			_, _, spec := runMongoPhase(t, mustAction(t, bp, tt.action).Phases[0], params)
			want := ExecSpec{
				Namespace:  "db",
				Pods:       []string{"mongo-7d9f8c-x2x4z"},
				Containers: []string{"mongodb"},
				Command:    []string{"mongosh", "--authenticationDatabase", "admin", "-u", "root", "-p", mongoPassword, tt.eval},
				Timeout:    tt.timeout,
			}
			if !reflect.DeepEqual(spec, want) {
				t.Errorf("spec =\n%#v\nwant\n%#v", spec, want)
			}
		})
	}
}

// The secret must never reach an error, whichever way rendering fails.
func TestMongoErrorsNeverContainSecret(t *testing.T) {
	const leakyPassword = "s3cr\"et\\pa55\nword "
	const pw = `(index .Phases.lockMongo.Secrets.mongoDbSecret.Data "mongodb-root-password" | toString)`

	tests := []struct {
		name     string
		template string
		wantMsg  string // a part of the error message that must be there
	}{
		{"typo in key", `{{ index .Phases.lockMongo.Secrets.mongoDbSecret.Data "mongodb-root-pasword" | toString }}`, `map has no entry for key "mongodb-root-pasword"`},
		{"typo in key, dot form", `{{ .Phases.lockMongo.Secrets.mongoDbSecret.Data.pasword | toString }}`, `map has no entry for key "pasword"`},
		{"key computed from the secret", `{{ index .Options ` + pw + ` }}`, `map has no entry for key "[REDACTED]"`},
		{"fail with the secret", `{{ fail ` + pw + ` }}`, `[REDACTED]`},
		{"fail with the secret in base64", `{{ fail (` + pw + ` | b64enc) }}`, `[REDACTED]`},
		{"fail with the secret as bytes", `{{ fail (printf "%v" (index .Phases.lockMongo.Secrets.mongoDbSecret.Data "mongodb-root-password")) }}`, `[REDACTED]`},
		{"fail with the trimmed secret", `{{ fail (` + pw + ` | trim) }}`, `[REDACTED]`},
		// The time package quotes with its own escapes (\x0a): details of a
		// function's error are withheld once params hold a Secret.
		{"date parse error quotes the secret", `{{ ` + pw + ` | mustToDate "2006-01-02" }}`, `error calling mustToDate: [details withheld`},
		{"regex error", `{{ mustRegexFind "(" ` + pw + ` }}`, `error calling mustRegexFind: [details withheld`},
		{"range over the secret", `{{ range $i, $c := (` + pw + ` | splitList "") }}{{ $c.x }}{{ end }}`, `can't evaluate field x`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bp := mustParse(t, blueprintWith(`
- func: KubeExec
  name: lockMongo
  objects:
    mongoDbSecret: {kind: Secret, name: mongodb, namespace: shop}
  args:
    namespace: shop
    pod: mongodb-0
    container: mongodb
    command: ["sh", "-c", '`+strings.ReplaceAll(tt.template, "'", "''")+`']
`))
			ph := mustAction(t, bp, ActionPrehook).Phases[0]
			params := Params{
				StatefulSet: &WorkloadParams{Name: "mongodb", Namespace: "shop", Pods: []string{"mongodb-0"}},
				Options:     map[string]string{},
				Phases: map[string]*PhaseParams{"lockMongo": {Secrets: map[string]Secret{
					"mongoDbSecret": {Name: "mongodb", Namespace: "shop", Data: map[string][]byte{"mongodb-root-password": []byte(leakyPassword)}},
				}}},
			}
			_, err := ph.RenderArgs(params)
			if err == nil {
				t.Fatal("RenderArgs: want an error")
			}
			if !errors.Is(err, ErrTemplate) {
				t.Errorf("error %v is not ErrTemplate", err)
			}
			prefix := "blueprint bp: action backupPrehook: phase lockMongo: args.command[2]: template: args.command[2]:"
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error = %q, want prefix %q", err, prefix)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantMsg)
			}
			assertNoSecret(t, err, leakyPassword)
		})
	}
}
