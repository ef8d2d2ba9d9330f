package blueprint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/freezeframe/freezeframe/services/hooker/podexec"
	"github.com/freezeframe/freezeframe/services/hooker/podexec/podexectest"
)

// injectionPhase is a hook that hands an option to bash, as blueprints for
// dump tools do; script is the text after `bash -c`.
func injectionPhase(t *testing.T, script string) Phase {
	t.Helper()
	bp := mustParse(t, blueprintWith(`
- func: KubeExec
  name: dump
  args:
    namespace: shop
    pod: db-0
    container: db
    command: [bash, -c, '`+script+`']
`))
	return mustAction(t, bp, ActionPrehook).Phases[0]
}

// runLocally execs the rendered phase as a local process, as the sandbox's
// kwok runs a pod exec, and returns its standard output.
func runLocally(t *testing.T, ph Phase, params Params) (string, error) {
	t.Helper()
	args, err := ph.RenderArgs(params)
	if err != nil {
		return "", err
	}
	spec, err := ph.ExecSpec(args)
	if err != nil {
		t.Fatalf("ExecSpec: %v", err)
	}
	res, err := (&podexectest.Local{}).Exec(t.Context(), podexec.Request{Namespace: spec.Namespace, Pod: spec.Pods[0], Container: spec.Containers[0], Command: spec.Command})
	if err != nil {
		t.Fatalf("exec %q: %v", spec.Command, err)
	}
	return string(res.Stdout), nil
}

func TestOptionInjectionRefusedUnlessQuoted(t *testing.T) {
	pwned := filepath.Join(t.TempDir(), "pwned")
	attack := "x; touch " + pwned

	t.Run("unquoted", func(t *testing.T) {
		ph := injectionPhase(t, `echo dumping {{ .Options.database }}`)
		_, err := runLocally(t, ph, Params{Options: map[string]string{"database": attack}})
		if !errors.Is(err, ErrUnquotedOption) {
			t.Fatalf("err %v, want ErrUnquotedOption", err)
		}
		for _, want := range []string{`option "database"`, "args.command[2]", "shellquote", "phase dump"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		if strings.Contains(err.Error(), pwned) {
			t.Errorf("error repeats the injected value: %s", err)
		}
	})

	t.Run("quoted", func(t *testing.T) {
		ph := injectionPhase(t, `echo dumping {{ .Options.database | shellquote }}`)
		out, err := runLocally(t, ph, Params{Options: map[string]string{"database": attack}})
		if err != nil {
			t.Fatal(err)
		}
		if want := "dumping " + attack + "\n"; out != want {
			t.Errorf("output %q, want %q: the value must arrive as one word, unchanged", out, want)
		}
	})

	// Sprig's quote and squote are not shell quoting: $(...) runs inside
	// double quotes, and squote does not escape a quote.
	for name, script := range map[string]string{
		"quote":  `echo {{ .Options.database | quote }}`,
		"squote": `echo {{ .Options.database | squote }}`,
		"upper":  `echo {{ .Options.database | upper }}`,
		"b64enc": `echo {{ .Options.database | b64enc }}`,
		"printf": `echo {{ printf "%s" .Options.database }}`,
		"with":   `{{ with .Options }}echo {{ .database }}{{ end }}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := runLocally(t, injectionPhase(t, script), Params{Options: map[string]string{"database": attack}})
			if !errors.Is(err, ErrUnquotedOption) {
				t.Fatalf("err %v, want ErrUnquotedOption", err)
			}
		})
	}

	if _, err := os.Stat(pwned); !os.IsNotExist(err) {
		t.Fatalf("the injected command ran (stat %s: %v)", pwned, err)
	}
}

func TestSafeOptionsRenderAsIs(t *testing.T) {
	ph := injectionPhase(t, `echo {{ .Options.database }} {{ .Options.database | shellquote }} {{ .Options.empty | shellquote }}`)
	out, err := runLocally(t, ph, Params{Options: map[string]string{"database": "shop_db-1.eu:5432/x=y@z,w+v", "empty": ""}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "shop_db-1.eu:5432/x=y@z,w+v shop_db-1.eu:5432/x=y@z,w+v \n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":            "''",
		"plain-1.2":   "plain-1.2",
		"a b":         "'a b'",
		"it's":        `'it'\''s'`,
		"$(id)":       "'$(id)'",
		"x; rm -rf /": "'x; rm -rf /'",
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// A forged placeholder in a safe option is only text: it neither unquotes
// another option nor fails the render.
func TestOptionPlaceholderCannotBeForged(t *testing.T) {
	ph := injectionPhase(t, `echo {{ .Options.a }} {{ .Options.b | shellquote }}`)
	out, err := runLocally(t, ph, Params{Options: map[string]string{"a": "ffqtd000000000000000000000000.0.", "b": "x y"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "ffqtd000000000000000000000000.0. x y\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
}

// A template error that quotes an unsafe option names the option, not the
// placeholder the template saw.
func TestOptionTemplateErrorNamesTheOption(t *testing.T) {
	ph := injectionPhase(t, `touch -d {{ mustToDate "2006-01-02" .Options.since | shellquote }} /tmp/mark`)
	_, err := ph.RenderArgs(Params{Options: map[string]string{"since": "1; reboot"}})
	if !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), "<option since>") {
		t.Fatalf("err %v, want a template error naming <option since>", err)
	}
	for _, token := range optionTokens() {
		if strings.Contains(err.Error(), token) {
			t.Fatalf("error shows the placeholder token: %v", err)
		}
	}
}
