package blueprint

import (
	"errors"
	"strings"
	"testing"
)

// renderSeeds are templates as blueprints write them, and ones that take
// numbers and text from a request's options into the functions that grow
// with them.
var renderSeeds = []string{
	`redis-cli -a "{{ index .Phases.prev.Secrets.auth.Data "password" | toString }}" CLIENT PAUSE {{ .Options.o }} WRITE`,
	`{{ index .StatefulSet.Pods 0 }}`,
	`{{ join " " .StatefulSet.Pods }}`,
	`{{ .Options.o | default "30000" }}`,
	`{{ repeat (atoi .Options.o) "x" }}`,
	`{{ indent (atoi .Options.o) .Options.o }}`,
	`{{ until (atoi .Options.o) | len }}`,
	`{{ seq 1 (atoi .Options.o) }}`,
	`{{ printf "%0*d" (atoi .Options.o) 1 }}`,
	`{{ .Options.o | b64dec | toString }}`,
	`{{ .Options.o | fromJson | toJson }}`,
	`{{ regexReplaceAll .Options.o "aaaa" "b" }}`,
	`{{ fail .Options.o }}`,
	`{{ index .Options .Options.o }}`,
	`{{ .Options.o | mustToDate "2006-01-02" }}`,
	`{{ toDate "2006-01-02T15:04:05.999999999Z07:00" .Time | date "2006-01-02" }}`,
	`{{ $s := .Options.o }}{{ $s = cat $s $s $s $s }}{{ $s = cat $s $s $s $s }}{{ len $s }}`,
	`mongosh --eval "db.fsyncLock()" -p {{ index .Phases.prev.Secrets.auth.Data "password" | toString | quote }}`,
}

// FuzzRender renders arbitrary templates against arbitrary options, Secret
// values and pod names, decodes the exec they ask for, and parses arbitrary
// hook output. It must never panic; errors are *Error of one of the
// package's kinds and never contain the Secret; a render stays within
// MaxRenderedSize and leaves literals alone.
//
// Templates with range are skipped: ranging over an integer
// ({{ range 1000000000 }}) loops without calling anything the limits can
// see; time spent rendering is bounded by the blueprint's author, not by
// the input of a backup request.
func FuzzRender(f *testing.F) {
	for i, tmpl := range renderSeeds {
		f.Add(tmpl, "o", []string{"30000", "1000000000000", "-1", "e30=", "{\"a\":[1,2]}", "2026-12-01", "o"}[i%7], []byte("hunter2"), "redis-0", []byte("###Phase-output###: {\"key\":\"k\",\"value\":\"v\"}\n"))
	}
	f.Fuzz(func(t *testing.T, tmpl, optKey, optVal string, secret []byte, pod string, stdout []byte) {
		if strings.Contains(tmpl, "range") {
			return // not an input this target judges: see above
		}
		p := testParams()
		p.Options = map[string]string{"o": optVal, optKey: optVal}
		if len(secret) > 0 {
			p.Phases["prev"].Secrets["auth"].Data["password"] = secret
		}
		p.StatefulSet.Pods = []string{pod, "redis-1"}
		ph := Phase{Func: FuncKubeExec, Name: "p", blueprint: "bp", action: ActionPrehook, Args: map[string]any{
			"namespace": "{{ .Namespace.Name }}",
			"pod":       "{{ index .StatefulSet.Pods 0 }}",
			"container": "redis",
			"command":   []any{"sh", "-c", tmpl},
		}}
		// A Secret that could come back out of the redaction itself, or
		// that is part of every message, cannot be checked for.
		checkSecret := len(secret) >= 3 && !strings.Contains(Redacted, string(secret)) && isAlnum(secret)
		rendered, err := ph.RenderArgs(p)
		if err != nil {
			if rendered != nil {
				t.Fatalf("RenderArgs returned %v with its error %v", rendered, err)
			}
			checkError(t, err, secret, checkSecret)
			return
		}
		cmd := rendered["command"].([]any)
		out := cmd[2].(string)
		if len(out) > MaxRenderedSize {
			t.Fatalf("rendered %d bytes, limit %d", len(out), MaxRenderedSize)
		}
		if !strings.Contains(tmpl, "{{") && out != tmpl {
			t.Fatalf("literal %q rendered as %q", tmpl, out)
		}
		if spec, err := ph.ExecSpec(rendered); err != nil {
			if spec.Namespace != "" || spec.Pods != nil || spec.Containers != nil || spec.Command != nil || spec.Timeout != 0 {
				t.Fatalf("ExecSpec returned %+v with its error %v", spec, err)
			}
			checkError(t, err, secret, checkSecret)
		} else if spec.Namespace != "cache" || len(spec.Pods) != 1 || spec.Pods[0] != strings.TrimSpace(pod) || len(spec.Command) != 3 || spec.Command[2] != out {
			t.Fatalf("ExecSpec %+v from pod %q and command %q", spec, pod, out)
		}
		kv, err := ParseOutput(stdout)
		if err != nil {
			if kv != nil || !errors.Is(err, ErrOutput) {
				t.Fatalf("ParseOutput: %v with %v", err, kv)
			}
			checkError(t, err, secret, false)
			return
		}
		if kv == nil {
			t.Fatal("ParseOutput returned nil without an error")
		}
		for k, v := range kv {
			if !outputKey.MatchString(k) {
				t.Fatalf("output key %q", k)
			}
			if _, ok := v.(string); !ok {
				t.Fatalf("output %s is a %T", k, v)
			}
		}
	})
}

func checkError(t *testing.T, err error, secret []byte, checkSecret bool) {
	t.Helper()
	var be *Error
	if !errors.As(err, &be) {
		t.Fatalf("error %T %v is not an *Error", err, err)
	}
	kinds := []error{ErrInvalid, ErrUnknownFunc, ErrMissingArg, ErrUnknownArg, ErrBadArg, ErrTemplate, ErrOutput}
	known := false
	for _, k := range kinds {
		known = known || errors.Is(err, k)
	}
	if !known {
		t.Fatalf("error %v is of no kind of the package", err)
	}
	// The location (blueprint, phase, field) is the blueprint's own text;
	// the detail is where a value could show.
	if checkSecret && be.Err != nil && strings.Contains(be.Err.Error(), string(secret)) {
		t.Fatalf("error quotes the Secret %q: %v", secret, err)
	}
}

func isAlnum(b []byte) bool {
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
