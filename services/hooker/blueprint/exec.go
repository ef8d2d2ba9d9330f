package blueprint

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// ExecSpec is what a KubeExec or KubeExecAll phase asks for: run Command in
// each of Containers in each of Pods. KubeExec gives one pod and one
// container.
type ExecSpec struct {
	Namespace  string
	Pods       []string
	Containers []string
	Command    []string
	// Timeout comes from the optional "timeout" argument (a Go duration, a
	// freezeframe extension Kanister does not have); zero means the caller's
	// default.
	Timeout time.Duration
}

// Kubernetes name syntax: namespaces and containers are RFC 1123 labels, pods
// RFC 1123 subdomains.
var (
	dnsLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// ExecSpec decodes the rendered args (from RenderArgs) of a KubeExec or
// KubeExecAll phase. For KubeExecAll, pods and containers are space-separated
// lists, as in Kanister; repeated names are dropped, because running a
// reference-counted lock such as MongoDB's fsyncLock twice in one pod needs
// two unlocks that the post-hook will not send.
//
// Error messages do not quote argument values: rendered args may hold
// secrets.
func (p Phase) ExecSpec(rendered map[string]any) (ExecSpec, error) {
	specs, ok := funcArgs(p.Func)
	if !ok {
		return ExecSpec{}, p.errorf("func", kindErr(ErrUnknownFunc, fmt.Sprintf("%q is not supported (want %s or %s)", p.Func, FuncKubeExec, FuncKubeExecAll)))
	}
	if p.Func == FuncKubeExecSession {
		// Run as a one-shot exec it would take the lock and drop it at once.
		return ExecSpec{}, p.errorf("func", kindErr(ErrUnknownFunc, FuncKubeExecSession+" keeps its session open: decode it with SessionSpec, not ExecSpec"))
	}
	if errs := checkArgs(p.Func, specs, rendered); len(errs) > 0 {
		return ExecSpec{}, p.errorf(errs[0].Field, errs[0].Err)
	}

	var spec ExecSpec
	var err error
	if spec.Namespace, err = nameArg(rendered, "namespace", dnsLabel, 63); err != nil {
		return ExecSpec{}, p.errorf("args.namespace", err)
	}
	switch p.Func {
	case FuncKubeExec:
		pod, err := nameArg(rendered, "pod", dnsSubdomain, 253)
		if err != nil {
			return ExecSpec{}, p.errorf("args.pod", err)
		}
		container, err := nameArg(rendered, "container", dnsLabel, 63)
		if err != nil {
			return ExecSpec{}, p.errorf("args.container", err)
		}
		spec.Pods, spec.Containers = []string{pod}, []string{container}
	case FuncKubeExecAll:
		if spec.Pods, err = nameListArg(rendered, "pods", dnsSubdomain, 253); err != nil {
			return ExecSpec{}, p.errorf("args.pods", err)
		}
		if spec.Containers, err = nameListArg(rendered, "containers", dnsLabel, 63); err != nil {
			return ExecSpec{}, p.errorf("args.containers", err)
		}
	}

	cmd, cerr := stringList("args.command", rendered["command"])
	if cerr != nil {
		return ExecSpec{}, p.errorf(cerr.Field, cerr.Err)
	}
	spec.Command = cmd

	if t, ok := rendered["timeout"].(string); ok {
		if spec.Timeout, err = parseTimeout(strings.TrimSpace(t)); err != nil {
			return ExecSpec{}, p.errorf("args.timeout", err)
		}
	}
	return spec, nil
}

func nameArg(args map[string]any, name string, re *regexp.Regexp, maxLen int) (string, error) {
	s := strings.TrimSpace(args[name].(string)) // type checked by checkArgs
	if s == "" {
		return "", kindErr(ErrMissingArg, "renders empty")
	}
	if len(s) > maxLen || !re.MatchString(s) {
		return "", kindErr(ErrBadArg, "not a valid Kubernetes name"+listHint(s))
	}
	return s, nil
}

func nameListArg(args map[string]any, name string, re *regexp.Regexp, maxLen int) ([]string, error) {
	fields := strings.Fields(args[name].(string)) // type checked by checkArgs
	if len(fields) == 0 {
		return nil, kindErr(ErrMissingArg, "renders empty")
	}
	out := make([]string, 0, len(fields))
	seen := make(map[string]bool, len(fields))
	for i, f := range fields {
		if len(f) > maxLen || !re.MatchString(f) {
			return nil, kindErr(ErrBadArg, fmt.Sprintf("item %d is not a valid Kubernetes name%s", i, listHint(f)))
		}
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out, nil
}

// listHint explains the usual cause of brackets in a name: a template that
// printed a Go slice.
func listHint(s string) string {
	if strings.ContainsAny(s, "[]") {
		return ` (a template printed a list; use {{ join " " .StatefulSet.Pods }} or index)`
	}
	return ""
}
