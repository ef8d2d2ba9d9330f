package blueprint

import (
	"errors"
	"strings"
)

// Sentinel errors classify an *Error; match them with errors.Is.
var (
	// ErrInvalid: the blueprint is malformed (not a Blueprint resource, an
	// unnamed or duplicate phase, an object of an unsupported kind).
	ErrInvalid = errors.New("invalid blueprint")
	// ErrUnknownAction: the blueprint has no action of that name.
	ErrUnknownAction = errors.New("unknown action")
	// ErrUnknownFunc: a phase names a Kanister function freezeframe does not run.
	ErrUnknownFunc = errors.New("unknown func")
	// ErrMissingArg: a required argument is absent, or renders empty.
	ErrMissingArg = errors.New("missing argument")
	// ErrUnknownArg: an argument the function does not take (often a
	// KubeExec/KubeExecAll mix-up such as "pods" on KubeExec).
	ErrUnknownArg = errors.New("unknown argument")
	// ErrBadArg: an argument has the wrong type or an unusable value.
	ErrBadArg = errors.New("bad argument")
	// ErrTemplate: a template does not parse, does not execute, or refers to
	// a phase or object the action does not define.
	ErrTemplate = errors.New("template error")
	// ErrOutput: a phase-output line written by `kando output` is malformed.
	ErrOutput = errors.New("malformed phase output")
)

// Error locates a problem in a blueprint: which blueprint, action, phase and
// field. Empty parts are left out of the message. Err never carries secret
// values: template errors are redacted before they are stored, and the raw
// template error is not kept, so unwrapping cannot reveal them either.
type Error struct {
	Blueprint string
	Action    string
	Phase     string
	Field     string // e.g. "args.command[2]", "objects.mongoDbSecret.name"
	Err       error
}

func (e *Error) Error() string {
	var b strings.Builder
	part := func(prefix, v string) {
		if v == "" {
			return
		}
		b.WriteString(prefix)
		b.WriteString(v)
		b.WriteString(": ")
	}
	part("blueprint ", e.Blueprint)
	part("action ", e.Action)
	part("phase ", e.Phase)
	part("", e.Field)
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return strings.TrimSuffix(b.String(), ": ")
}

func (e *Error) Unwrap() error { return e.Err }

// kindError attaches a sentinel to a detail error without putting the
// sentinel's text into the message, so messages stay short ("args.pod: ...")
// while errors.Is still works on both the sentinel and the detail.
type kindError struct {
	kind   error
	detail error
}

func (e *kindError) Error() string   { return e.detail.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.detail} }

func kindErr(kind error, detail string) error {
	return &kindError{kind: kind, detail: errors.New(detail)}
}

func kindWrap(kind, detail error) error {
	return &kindError{kind: kind, detail: detail}
}
