package blueprint

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"time"
)

// SessionSpec is what a KubeExecSession phase asks for: start Command in one
// container with stdin kept open, write Stdin, and count the lock as taken
// once the command's standard output matches ReadyPattern; at resume, write
// ReleaseInput and close stdin, which ends the command.
//
// Stdin and ReleaseInput may hold Secret values (a password typed into a
// client): log neither.
type SessionSpec struct {
	Namespace string
	Pod       string
	Container string
	Command   []string
	// Stdin is written once the command has started. It ends with a newline
	// (added when the blueprint's text has none): line-oriented clients such
	// as mariadb and psql execute nothing until the line ends, and a missing
	// final newline would otherwise look like a lock that never comes.
	Stdin string
	// ReadyPattern is matched against everything the command printed on
	// standard output so far (not stderr, where a client echoes a failing
	// statement, pattern included). It never matches empty output.
	ReadyPattern *regexp.Regexp
	// ReleaseInput is written at resume, then stdin is closed. Empty means
	// closing stdin is the release: the client exits and the server ends the
	// session, which drops a session-bound lock. Ends with a newline, as Stdin.
	ReleaseInput string
	// Timeout bounds the wait for ReadyPattern (not the session, which lasts
	// until the resume); zero means the caller's default.
	Timeout time.Duration
}

// SessionSpec decodes the rendered args (from RenderArgs) of a
// KubeExecSession phase. Like ExecSpec, its errors never quote argument
// values: stdin and releaseInput are where a blueprint puts a password.
func (p Phase) SessionSpec(rendered map[string]any) (SessionSpec, error) {
	if p.Func != FuncKubeExecSession {
		return SessionSpec{}, p.errorf("func", kindErr(ErrUnknownFunc, fmt.Sprintf("%q is not %s: decode it with ExecSpec", p.Func, FuncKubeExecSession)))
	}
	specs, _ := funcArgs(p.Func)
	if errs := checkArgs(p.Func, specs, rendered); len(errs) > 0 {
		return SessionSpec{}, p.errorf(errs[0].Field, errs[0].Err)
	}

	var spec SessionSpec
	var err error
	if spec.Namespace, err = nameArg(rendered, "namespace", dnsLabel, 63); err != nil {
		return SessionSpec{}, p.errorf("args.namespace", err)
	}
	if spec.Pod, err = nameArg(rendered, "pod", dnsSubdomain, 253); err != nil {
		return SessionSpec{}, p.errorf("args.pod", err)
	}
	if spec.Container, err = nameArg(rendered, "container", dnsLabel, 63); err != nil {
		return SessionSpec{}, p.errorf("args.container", err)
	}
	cmd, cerr := stringList("args.command", rendered["command"])
	if cerr != nil {
		return SessionSpec{}, p.errorf(cerr.Field, cerr.Err)
	}
	spec.Command = cmd

	// checkArgs checked the types, and that stdin is not blank.
	spec.Stdin = withNewline(rendered["stdin"].(string))
	if spec.ReadyPattern, err = compileReadyPattern(rendered["readyPattern"].(string)); err != nil {
		return SessionSpec{}, p.errorf("args.readyPattern", err)
	}
	spec.ReleaseInput = withNewline(rendered["releaseInput"].(string))

	if t, ok := rendered["timeout"].(string); ok {
		if spec.Timeout, err = parseTimeout(strings.TrimSpace(t)); err != nil {
			return SessionSpec{}, p.errorf("args.timeout", err)
		}
	}
	return spec, nil
}

// compileReadyPattern compiles a readyPattern. The pattern is not quoted back
// in errors (only the kind of syntax error is), since after rendering it
// could hold anything. A pattern that matches empty output (".*", "x?") is
// refused: it would report the lock taken before the command printed
// anything, and the snapshot would be cut of a database that is not frozen.
func compileReadyPattern(s string) (*regexp.Regexp, error) {
	if s == "" {
		return nil, kindErr(ErrMissingArg, "renders empty")
	}
	re, err := regexp.Compile(s)
	if err != nil {
		var se *syntax.Error
		if errors.As(err, &se) {
			return nil, kindErr(ErrBadArg, "not a Go regexp: "+string(se.Code))
		}
		return nil, kindErr(ErrBadArg, "not a Go regexp")
	}
	if re.MatchString("") {
		return nil, kindErr(ErrBadArg, "matches empty output, so the lock would count as taken before the command printed anything")
	}
	return re, nil
}

// withNewline ends non-empty input with a newline; see SessionSpec.Stdin.
func withNewline(s string) string {
	if s == "" || strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

// checkSessionPlace refuses KubeExecSession where its session could not be
// closed by the resume: outside the pre-hook's phases nothing would hold it
// until backupPosthook, and a defer phase runs after the pre-hook is over.
func checkSessionPlace(fn, action string, isDefer bool) error {
	if fn != FuncKubeExecSession {
		return nil
	}
	if action != ActionPrehook {
		return kindErr(ErrInvalid, FuncKubeExecSession+" runs only in "+ActionPrehook+": the session it opens is held until "+ActionPosthook)
	}
	if isDefer {
		return kindErr(ErrInvalid, FuncKubeExecSession+" cannot be a deferPhase: the session must open before the snapshot, not after the pre-hook")
	}
	return nil
}
