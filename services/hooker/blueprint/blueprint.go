package blueprint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Action names K10 reserves for application hooks; freezeframe runs the same
// two, so a blueprint written for K10 works unchanged.
const (
	ActionPrehook  = "backupPrehook"  // quiesce
	ActionPosthook = "backupPosthook" // resume
)

// Kanister functions freezeframe runs. Others (KubeTask, BackupData, ...) may
// appear in actions freezeframe never executes; see [Blueprint.Validate].
const (
	FuncKubeExec    = "KubeExec"
	FuncKubeExecAll = "KubeExecAll"
	// FuncKubeExecSession is freezeframe's own (Kanister has no such
	// function): it keeps the exec session open from the pre-hook to the
	// post-hook, for locks that last only as long as the client's session.
	// See [Phase.SessionSpec].
	FuncKubeExecSession = "KubeExecSession"
)

// Object kinds a phase may reference through "objects".
const (
	KindSecret    = "Secret"
	KindConfigMap = "ConfigMap"
)

// API groups whose Blueprint resources share one shape (metadata plus a
// top-level "actions" map).
const (
	GroupFreezeframe = "freezeframe.io"
	GroupKanister    = "cr.kanister.io"
)

// Blueprint is a decoded Blueprint resource.
type Blueprint struct {
	Name      string
	Namespace string
	Actions   map[string]*Action
	// MaxFreeze caps how long this blueprint may keep an application
	// frozen, from the annotation AnnotationMaxFreeze; zero: the hooker's
	// default. Kanister's format has no such field, hence the annotation.
	MaxFreeze time.Duration
	// attended are the backupPosthook phases that run only when the hooker
	// asks, from the annotation AnnotationAttendedPhases; attendedAll: "*".
	attended    []string
	attendedAll bool
}

// AnnotationMaxFreeze on a Blueprint sets its freeze cap (a Go duration).
const AnnotationMaxFreeze = "freezeframe.io/max-freeze"

// AnnotationAttendedPhases on a Blueprint names backupPosthook phases, comma
// separated ("*": all of them), that must run only when the hooker asks:
// they are not armed before the freeze, so no dead man's switch runs them
// should the hooker die (see docs/blueprints.md).
const AnnotationAttendedPhases = "freezeframe.io/attended-phases"

// Attended reports whether the backupPosthook phase may run only when the
// hooker asks (AnnotationAttendedPhases).
func (b *Blueprint) Attended(phase string) bool {
	return b.attendedAll || slices.Contains(b.attended, phase)
}

// Action is a named list of phases run in order. DeferPhase runs after the
// phases whether they succeed or fail (Kanister's guarantee, which is what
// makes it the right place for an unlock).
type Action struct {
	Phases     []Phase `json:"phases,omitempty"`
	DeferPhase *Phase  `json:"deferPhase,omitempty"`
}

// Mentions reports whether any template of the action (args, object names
// and namespaces, of every phase and the defer phase) contains word, e.g.
// "Object": parameters a blueprint never mentions need not be built. A
// mention in a comment or a string counts too; that only costs the build.
func (a *Action) Mentions(word string) bool {
	if a == nil {
		return false
	}
	phases := a.Phases
	if a.DeferPhase != nil {
		phases = append(slices.Clip(phases), *a.DeferPhase)
	}
	for _, ph := range phases {
		for _, o := range ph.Objects {
			if strings.Contains(o.Name, word) || strings.Contains(o.Namespace, word) {
				return true
			}
		}
		if mentions(ph.Args, word) {
			return true
		}
	}
	return false
}

func mentions(v any, word string) bool {
	switch v := v.(type) {
	case string:
		return strings.Contains(v, word)
	case map[string]any:
		for k, e := range v {
			if strings.Contains(k, word) || mentions(e, word) {
				return true
			}
		}
	case []any:
		for _, e := range v {
			if mentions(e, word) {
				return true
			}
		}
	}
	return false
}

// Phase is one call of a Kanister function.
type Phase struct {
	Func string `json:"func"`
	Name string `json:"name"`
	// Objects maps an alias to a Secret or ConfigMap whose data the phase's
	// templates read as .Phases.<phase>.Secrets.<alias> or .ConfigMaps.<alias>.
	// Name and namespace may be templates.
	Objects map[string]ObjectReference `json:"objects,omitempty"`
	// Args are the function's arguments; every string in them, at any depth,
	// is a text/template with sprig functions.
	Args map[string]any `json:"args,omitempty"`

	// Where the phase was decoded from, so that errors from Phase methods can
	// name the blueprint and action: those methods take the phase alone.
	blueprint string
	action    string
}

// ObjectReference is Kanister's reference to an object. Only Kind, Name and
// Namespace matter for Secrets and ConfigMaps; the others are kept so that a
// blueprint round-trips and so that Validate can reject references to other
// resources instead of silently ignoring them.
type ObjectReference struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Group      string `json:"group,omitempty"`
	Resource   string `json:"resource,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Name       string `json:"name,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
}

// resource is the wire shape shared by freezeframe.io and cr.kanister.io
// Blueprints. Kanister's per-action fields (kind, secretNames,
// outputArtifacts, ...) are ignored: hooks do not use them.
type resource struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Actions map[string]*Action `json:"actions"`
}

// Parse decodes a Blueprint resource from a YAML or JSON document. Only the
// first document of a multi-document YAML stream is read.
func Parse(data []byte) (*Blueprint, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, &Error{Err: kindWrap(ErrInvalid, fmt.Errorf("decode yaml: %w", err))}
	}
	return decode(js)
}

// FromUnstructured decodes a Blueprint resource given as unstructured content,
// as returned by a dynamic client.
func FromUnstructured(obj map[string]any) (*Blueprint, error) {
	js, err := json.Marshal(obj)
	if err != nil {
		return nil, &Error{Err: kindWrap(ErrInvalid, fmt.Errorf("encode unstructured: %w", err))}
	}
	return decode(js)
}

func decode(js []byte) (*Blueprint, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	// Numbers are decoded as int64 or float64 below, like unstructured
	// content, so YAML and dynamic-client input give identical Args.
	dec.UseNumber()
	var r resource
	if err := dec.Decode(&r); err != nil {
		return nil, &Error{Err: kindWrap(ErrInvalid, fmt.Errorf("decode blueprint: %w", err))}
	}
	name := r.Metadata.Name
	if r.Kind != "Blueprint" {
		return nil, &Error{Blueprint: name, Field: "kind", Err: kindErr(ErrInvalid, fmt.Sprintf("kind is %q, want Blueprint", r.Kind))}
	}
	group, _, _ := strings.Cut(r.APIVersion, "/")
	if group != GroupFreezeframe && group != GroupKanister {
		return nil, &Error{Blueprint: name, Field: "apiVersion", Err: kindErr(ErrInvalid,
			fmt.Sprintf("apiVersion %q is neither %s nor %s", r.APIVersion, GroupFreezeframe, GroupKanister))}
	}
	b := &Blueprint{Name: name, Namespace: r.Metadata.Namespace, Actions: r.Actions}
	if v, ok := r.Metadata.Annotations[AnnotationMaxFreeze]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, &Error{Blueprint: name, Field: "metadata.annotations." + AnnotationMaxFreeze, Err: kindErr(ErrInvalid, fmt.Sprintf("%q is not a positive Go duration such as 90s", v))}
		}
		b.MaxFreeze = d
	}
	if b.Actions == nil {
		b.Actions = map[string]*Action{}
	}
	if v, ok := r.Metadata.Annotations[AnnotationAttendedPhases]; ok {
		if err := b.setAttended(v); err != nil {
			return nil, err
		}
	}
	for an, a := range b.Actions {
		if a == nil {
			continue
		}
		for i := range a.Phases {
			if err := a.Phases[i].normalize(name, an); err != nil {
				return nil, err
			}
		}
		if a.DeferPhase != nil {
			if err := a.DeferPhase.normalize(name, an); err != nil {
				return nil, err
			}
		}
	}
	return b, nil
}

func (p *Phase) normalize(blueprint, action string) error {
	p.blueprint, p.action = blueprint, action
	for k, v := range p.Args {
		nv, err := normalizeNumbers(v)
		if err != nil {
			return p.errorf("args."+k, kindWrap(ErrBadArg, err))
		}
		p.Args[k] = nv
	}
	return nil
}

func normalizeNumbers(v any) (any, error) {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i, nil
		}
		f, err := v.Float64()
		if err != nil || math.IsInf(f, 0) {
			return nil, errors.New("number out of range")
		}
		return f, nil
	case []any:
		for i := range v {
			nv, err := normalizeNumbers(v[i])
			if err != nil {
				return nil, err
			}
			v[i] = nv
		}
	case map[string]any:
		for k := range v {
			nv, err := normalizeNumbers(v[k])
			if err != nil {
				return nil, err
			}
			v[k] = nv
		}
	}
	return v, nil
}

// errorf builds an *Error located at this phase.
func (p Phase) errorf(field string, err error) *Error {
	return &Error{Blueprint: p.blueprint, Action: p.action, Phase: p.Name, Field: field, Err: err}
}

// setAttended reads AnnotationAttendedPhases: "*", or names of the
// backupPosthook's phases (its defer phase included).
func (b *Blueprint) setAttended(v string) error {
	field := "metadata.annotations." + AnnotationAttendedPhases
	if strings.TrimSpace(v) == "*" {
		b.attendedAll = true
		return nil
	}
	var known []string
	if a := b.Actions[ActionPosthook]; a != nil {
		for _, ph := range a.Phases {
			known = append(known, ph.Name)
		}
		if a.DeferPhase != nil {
			known = append(known, a.DeferPhase.Name)
		}
	}
	for _, name := range strings.Split(v, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == "":
			return &Error{Blueprint: b.Name, Field: field, Err: kindErr(ErrInvalid, fmt.Sprintf("%q has an empty phase name: want phase names of %s separated by commas, or *", v, ActionPosthook))}
		case !slices.Contains(known, name):
			return &Error{Blueprint: b.Name, Field: field, Err: kindErr(ErrInvalid, fmt.Sprintf("%q is not a phase of %s (its phases: %s)", name, ActionPosthook, strings.Join(known, ", ")))}
		}
		b.attended = append(b.attended, name)
	}
	return nil
}
