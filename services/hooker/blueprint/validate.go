package blueprint

import (
	"errors"
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
)

// argSpec describes one argument of a function.
type argSpec struct {
	name     string
	required bool
	list     bool // a list of strings (command); otherwise a string
}

// funcArgs returns the arguments a function takes, as Kanister defines them,
// plus freezeframe's optional timeout. A switch rather than a package-level
// map keeps the table immutable.
func funcArgs(fn string) ([]argSpec, bool) {
	timeout := argSpec{name: "timeout"}
	switch fn {
	case FuncKubeExec:
		return []argSpec{
			{name: "namespace", required: true},
			{name: "pod", required: true},
			{name: "container", required: true},
			{name: "command", required: true, list: true},
			timeout,
		}, true
	case FuncKubeExecAll:
		return []argSpec{
			{name: "namespace", required: true},
			{name: "pods", required: true},
			{name: "containers", required: true},
			{name: "command", required: true, list: true},
			timeout,
		}, true
	case FuncKubeExecSession:
		// The timeout bounds the wait for readyPattern, not the session:
		// the session lasts until the resume.
		return []argSpec{
			{name: "namespace", required: true},
			{name: "pod", required: true},
			{name: "container", required: true},
			{name: "command", required: true, list: true},
			{name: "stdin", required: true},
			{name: "readyPattern", required: true},
			{name: "releaseInput", required: true},
			timeout,
		}, true
	}
	return nil, false
}

// Action returns the named action. Its phases know the blueprint and action
// they belong to, so errors from their methods name both, also for a
// Blueprint built in Go rather than decoded.
func (b *Blueprint) Action(name string) (*Action, error) {
	a, ok := b.Actions[name]
	if !ok {
		defined := "none"
		if len(b.Actions) > 0 {
			defined = strings.Join(sortedKeys(b.Actions), ", ")
		}
		return nil, &Error{Blueprint: b.Name, Action: name,
			Err: kindErr(ErrUnknownAction, "not defined in the blueprint (defined: "+defined+")")}
	}
	out := &Action{}
	if a == nil {
		return out, nil
	}
	out.Phases = make([]Phase, len(a.Phases))
	for i, p := range a.Phases {
		p.blueprint, p.action = b.Name, name
		out.Phases[i] = p
	}
	if a.DeferPhase != nil {
		d := *a.DeferPhase
		d.blueprint, d.action = b.Name, name
		out.DeferPhase = &d
	}
	return out, nil
}

// Validate checks the named actions, each of which must exist, or every
// action when none is named. The hooker names the actions it will run
// (ActionPrehook, ActionPosthook): a blueprint shared with Kanister may also
// hold backup or restore actions using functions freezeframe does not run,
// and those must not make it unusable.
//
// It checks, without rendering: each action has phases; each phase has a
// name unique in its action, a known Func, the arguments that Func needs and
// no others, argument types, templates that parse (sprig functions
// included), references such as .Phases.<phase>.Secrets.<alias> that point
// to an earlier phase of the same action and an object of the right kind,
// and objects that are Secrets or ConfigMaps with a name and namespace.
// Catching these before anything runs matters most for the post-hook: a
// resume that fails to render leaves the application frozen.
//
// All problems are returned together (errors.Join of *Error).
func (b *Blueprint) Validate(actions ...string) error {
	if b == nil {
		return &Error{Err: kindErr(ErrInvalid, "nil blueprint")}
	}
	var errs []error
	if b.Name == "" {
		errs = append(errs, &Error{Field: "metadata.name", Err: kindErr(ErrInvalid, "blueprint has no name")})
	}
	names := actions
	if len(names) == 0 {
		names = sortedKeys(b.Actions)
		if len(names) == 0 {
			errs = append(errs, &Error{Blueprint: b.Name, Field: "actions", Err: kindErr(ErrInvalid, "blueprint defines no actions")})
		}
	}
	fm := funcMap()
	for _, name := range names {
		a, err := b.Action(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, a.validate(b.Name, name, fm)...)
	}
	return errors.Join(errs...)
}

func (a *Action) validate(blueprint, action string, fm template.FuncMap) []error {
	if len(a.Phases) == 0 && a.DeferPhase == nil {
		return []error{&Error{Blueprint: blueprint, Action: action, Err: kindErr(ErrInvalid, "action has no phases")}}
	}
	all := a.Phases
	labels := make([]string, 0, len(a.Phases)+1)
	for i := range a.Phases {
		labels = append(labels, fmt.Sprintf("phases[%d]", i))
	}
	if a.DeferPhase != nil {
		all = append(all[:len(all):len(all)], *a.DeferPhase)
		labels = append(labels, "deferPhase")
	}

	var errs []error
	seen := map[string]bool{}
	for i, p := range all {
		switch {
		case p.Name == "":
			errs = append(errs, &Error{Blueprint: blueprint, Action: action, Phase: labels[i], Field: "name",
				Err: kindErr(ErrInvalid, "phase has no name")})
		case seen[p.Name]:
			errs = append(errs, &Error{Blueprint: blueprint, Action: action, Phase: p.Name, Field: "name",
				Err: kindErr(ErrInvalid, "phase name is used twice in the action")})
		default:
			seen[p.Name] = true
			labels[i] = p.Name
		}
	}
	for i, p := range all {
		isDefer := a.DeferPhase != nil && i == len(all)-1
		if err := checkSessionPlace(p.Func, action, isDefer); err != nil {
			errs = append(errs, &Error{Blueprint: blueprint, Action: action, Phase: labels[i], Field: "func", Err: err})
		}
		// A phase may read its own objects and anything from the phases
		// before it; the defer phase runs last and may read all of them.
		visible := all[:i+1]
		for _, err := range p.validate(fm, visible) {
			err.Blueprint, err.Action, err.Phase = blueprint, action, labels[i]
			errs = append(errs, err)
		}
	}
	return errs
}

func (p Phase) validate(fm template.FuncMap, visible []Phase) []*Error {
	var errs []*Error
	add := func(field string, err error) { errs = append(errs, &Error{Field: field, Err: err}) }

	for _, alias := range sortedKeys(p.Objects) {
		ref := p.Objects[alias]
		f := "objects." + alias
		if ref.Kind != KindSecret && ref.Kind != KindConfigMap {
			add(f+".kind", kindErr(ErrInvalid, fmt.Sprintf("kind %q is not supported (want %s or %s)", ref.Kind, KindSecret, KindConfigMap)))
		}
		if ref.Name == "" {
			add(f+".name", kindErr(ErrMissingArg, "required"))
		}
		if ref.Namespace == "" {
			add(f+".namespace", kindErr(ErrMissingArg, "required"))
		}
		for _, fv := range [...]struct{ field, text string }{
			{"apiVersion", ref.APIVersion}, {"group", ref.Group}, {"resource", ref.Resource},
			{"kind", ref.Kind}, {"name", ref.Name}, {"namespace", ref.Namespace},
		} {
			if err := checkTemplate(f+"."+fv.field, fv.text, fm, visible); err != nil {
				add(f+"."+fv.field, err)
			}
		}
	}

	specs, known := funcArgs(p.Func)
	if !known {
		add("func", kindErr(ErrUnknownFunc, fmt.Sprintf("%q is not supported (want %s or %s)", p.Func, FuncKubeExec, FuncKubeExecAll)))
	} else {
		for _, err := range checkArgs(p.Func, specs, p.Args) {
			errs = append(errs, err)
		}
	}

	walkStrings("args", p.Args, func(path, s string) {
		if err := checkTemplate(path, s, fm, visible); err != nil {
			add(path, err)
		}
	})
	return errs
}

// checkArgs checks presence and static types of a function's arguments.
// Values that are templates are checked for type only; ExecSpec checks them
// again after rendering.
func checkArgs(fn string, specs []argSpec, args map[string]any) []*Error {
	var errs []*Error
	add := func(field string, err error) { errs = append(errs, &Error{Field: field, Err: err}) }
	takes := map[string]argSpec{}
	for _, s := range specs {
		takes[s.name] = s
		v, ok := args[s.name]
		if !ok || v == nil {
			if s.required {
				add("args."+s.name, kindErr(ErrMissingArg, "required by "+fn))
			}
			continue
		}
		field := "args." + s.name
		if s.list {
			if _, err := stringList(field, v); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		str, ok := v.(string)
		if !ok {
			add(field, kindErr(ErrBadArg, fmt.Sprintf("want a string, got %s", typeName(v))))
			continue
		}
		if s.name == "timeout" && !strings.Contains(str, "{{") {
			if _, err := parseTimeout(str); err != nil {
				add(field, err)
			}
		}
		if s.name == "readyPattern" && !strings.Contains(str, "{{") {
			if _, err := compileReadyPattern(str); err != nil {
				add(field, err)
			}
		}
		if s.name == "stdin" && strings.TrimSpace(str) == "" {
			add(field, kindErr(ErrMissingArg, "empty (it is what takes the lock)"))
		}
	}
	for _, name := range sortedKeys(args) {
		if _, ok := takes[name]; ok {
			continue
		}
		msg := fmt.Sprintf("%s does not take %q", fn, name)
		if other := otherExecFunc(fn, name); other != "" {
			msg += " (" + other + " does)"
		}
		add("args."+name, kindErr(ErrUnknownArg, msg))
	}
	return errs
}

// otherExecFunc names another exec function that takes the argument fn does
// not, for the usual mix-ups ("pods" on KubeExec, "stdin" on KubeExec).
func otherExecFunc(fn, arg string) string {
	for _, other := range [...]string{FuncKubeExec, FuncKubeExecAll, FuncKubeExecSession} {
		if other == fn {
			continue
		}
		if specs, _ := funcArgs(other); hasArg(specs, arg) {
			return other
		}
	}
	return ""
}

func hasArg(specs []argSpec, name string) bool {
	for _, s := range specs {
		if s.name == name {
			return true
		}
	}
	return false
}

// stringList accepts a list whose elements are strings, or numbers and
// booleans (YAML makes `- 30` a number; it is meant as the word "30").
func stringList(field string, v any) ([]string, *Error) {
	var items []any
	switch v := v.(type) {
	case []any:
		items = v
	case []string:
		out := append([]string(nil), v...)
		if len(out) == 0 {
			return nil, &Error{Field: field, Err: kindErr(ErrMissingArg, "empty list")}
		}
		return out, nil
	default:
		return nil, &Error{Field: field, Err: kindErr(ErrBadArg, fmt.Sprintf("want a list of strings, got %s", typeName(v)))}
	}
	if len(items) == 0 {
		return nil, &Error{Field: field, Err: kindErr(ErrMissingArg, "empty list")}
	}
	out := make([]string, len(items))
	for i, it := range items {
		switch it := it.(type) {
		case string:
			out[i] = it
		case bool, int, int32, int64, float32, float64:
			out[i] = fmt.Sprint(it)
		default:
			return nil, &Error{Field: fmt.Sprintf("%s[%d]", field, i), Err: kindErr(ErrBadArg, fmt.Sprintf("want a string, got %s", typeName(it)))}
		}
	}
	return out, nil
}

func parseTimeout(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	// The value is not quoted back: after rendering it could hold anything.
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, kindErr(ErrBadArg, `not a Go duration (such as "30s" or "5m")`)
	}
	if d < 0 {
		return 0, kindErr(ErrBadArg, "negative duration")
	}
	return d, nil
}

// typeName names a decoded value's type in blueprint terms, never its value.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int32, int64, float32, float64:
		return "a number"
	case []any, []string:
		return "a list"
	case map[string]any, map[string]string:
		return "a map"
	}
	return fmt.Sprintf("%T", v)
}

// walkStrings calls f for every string in v, at any depth, with its path.
func walkStrings(path string, v any, f func(path, s string)) {
	switch v := v.(type) {
	case string:
		f(path, v)
	case []any:
		for i, e := range v {
			walkStrings(fmt.Sprintf("%s[%d]", path, i), e, f)
		}
	case []string:
		for i, e := range v {
			f(fmt.Sprintf("%s[%d]", path, i), e)
		}
	case map[string]any:
		for _, k := range sortedKeys(v) {
			walkStrings(path+"."+k, v[k], f)
		}
	case map[string]string:
		for _, k := range sortedKeys(v) {
			f(path+"."+k, v[k])
		}
	}
}

// checkTemplate parses one template and checks its references to phases.
func checkTemplate(name, text string, fm template.FuncMap, visible []Phase) error {
	if !strings.Contains(text, "{{") {
		return nil
	}
	t, err := parsed(name, text, fm)
	if err != nil {
		return kindErr(ErrTemplate, err.Error())
	}
	var problems []string
	check := func(ident []string) {
		if msg := checkPhaseRef(ident, visible); msg != "" {
			problems = append(problems, msg)
		}
	}
	walkNode(t.Root, true, check)
	if len(problems) > 0 {
		return kindErr(ErrTemplate, strings.Join(problems, "; "))
	}
	return nil
}

// checkPhaseRef checks a field chain starting at the template root, such as
// .Phases.lockMongo.Secrets.mongoDbSecret.Data. It returns a message, or ""
// when the chain does not start with .Phases or is fine.
func checkPhaseRef(ident []string, visible []Phase) string {
	if len(ident) < 2 || ident[0] != "Phases" {
		return ""
	}
	var phase *Phase
	names := make([]string, 0, len(visible))
	for i := range visible {
		names = append(names, visible[i].Name)
		if visible[i].Name == ident[1] {
			phase = &visible[i]
		}
	}
	ref := "." + strings.Join(ident[:min(len(ident), 4)], ".")
	if phase == nil {
		return fmt.Sprintf("%s: no phase %q at or before this one in the action (have: %s)", ref, ident[1], strings.Join(names, ", "))
	}
	if len(ident) < 4 {
		return ""
	}
	var kind string
	switch ident[2] {
	case "Secrets":
		kind = KindSecret
	case "ConfigMaps":
		kind = KindConfigMap
	default:
		return ""
	}
	if obj, ok := phase.Objects[ident[3]]; !ok || obj.Kind != kind {
		return fmt.Sprintf("%s: phase %q has no %s object %q", ref, phase.Name, kind, ident[3])
	}
	return ""
}

// walkNode visits field chains evaluated against the template's root data.
// Inside range and with the dot moves, so .Phases there is something else
// and is not checked; $.Phases always is.
func walkNode(n parse.Node, rootDot bool, f func(ident []string)) {
	switch n := n.(type) {
	case nil:
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walkNode(c, rootDot, f)
		}
	case *parse.ActionNode:
		walkNode(n.Pipe, rootDot, f)
	case *parse.TemplateNode:
		walkNode(n.Pipe, rootDot, f)
	case *parse.IfNode:
		walkNode(n.Pipe, rootDot, f)
		walkNode(n.List, rootDot, f)
		walkNode(n.ElseList, rootDot, f)
	case *parse.RangeNode:
		walkNode(n.Pipe, rootDot, f)
		walkNode(n.List, false, f)
		walkNode(n.ElseList, rootDot, f)
	case *parse.WithNode:
		walkNode(n.Pipe, rootDot, f)
		walkNode(n.List, false, f)
		walkNode(n.ElseList, rootDot, f)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walkNode(c, rootDot, f)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walkNode(a, rootDot, f)
		}
	case *parse.ChainNode:
		walkNode(n.Node, rootDot, f)
	case *parse.FieldNode:
		if rootDot {
			f(n.Ident)
		}
	case *parse.VariableNode:
		if len(n.Ident) > 1 && n.Ident[0] == "$" {
			f(n.Ident[1:])
		}
	}
}
