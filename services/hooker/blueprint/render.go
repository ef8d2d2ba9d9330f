package blueprint

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"text/template"

	"github.com/Masterminds/sprig/v3"
)

// funcMap returns sprig's functions, as Kanister offers them, with these
// changes:
//   - env and expandenv are removed: they would hand the hooker's own
//     environment (its credentials) to whoever may create a Blueprint;
//   - getHostByName is removed: rendering must do no I/O;
//   - index fails on a missing map key, as missingkey=error makes .a.b fail.
//     The builtin index returns the zero value, so a typo in
//     {{ index .Phases.p.Secrets.s.Data "pasword" | toString }} would
//     otherwise log in with an empty password instead of failing;
//   - the functions whose cost grows with a number argument (repeat,
//     indent, nindent, until, untilStep, seq, the rand* family) refuse
//     numbers that would build more than MaxRenderedSize bytes or
//     MaxListLength items: the number may come from a request's options
//     (atoi .Options.n), and one render must not exhaust the hooker's
//     memory while other applications are frozen;
//   - shellquote is added: options whose values a shell could interpret
//     reach commands only through it (see renderGuarded);
//   - the key and certificate generators (genPrivateKey, genCA,
//     genSelfSignedCert, genSignedCert and their WithKey forms) are
//     removed: each call costs up to seconds of CPU, and a hook has no use
//     for a fresh key.
//
// The map is built once and never written after: text/template copies it
// into each template, and sprig's ~200 entries per render were most of the
// hooker's allocations under load.
var funcMap = sync.OnceValue(newFuncMap)

func newFuncMap() template.FuncMap {
	fm := sprig.TxtFuncMap()
	delete(fm, "env")
	delete(fm, "expandenv")
	delete(fm, "getHostByName")
	for _, f := range []string{"genPrivateKey", "genCA", "genCAWithKey", "genSelfSignedCert", "genSelfSignedCertWithKey", "genSignedCert", "genSignedCertWithKey"} {
		delete(fm, f)
	}
	bounded(fm)
	fm["index"] = strictIndex
	fm["fail"] = func(msg string) (string, error) { return "", &ownError{msg} }
	fm["shellquote"] = shellquoteFunc
	return fm
}

// ownError marks an error from a function of this package (index, fail)
// whose message is known to be safe to show once redacted: it quotes a map
// key, or the blueprint author's own message.
type ownError struct{ msg string }

func (e *ownError) Error() string { return e.msg }

func ownErrorf(format string, args ...any) error {
	return &ownError{fmt.Sprintf(format, args...)}
}

// withheld replaces the message of a function's error.
const withheld = "[details withheld: they may contain a Secret value]"

// execErrorMessage returns the message of a template execution error, with
// the message of a failing function withheld when params hold Secrets.
// Functions quote their input in errors, each with its own escaping (time
// writes a newline as \x0a), so no list of encodings can be trusted to catch
// every copy of a secret there; the template location and the function's
// name stay, which is what a blueprint author needs to find the mistake.
func execErrorMessage(err error, secrets [][]byte) string {
	msg := err.Error()
	if len(secrets) == 0 {
		return msg
	}
	var ee template.ExecError
	if !errors.As(err, &ee) {
		return msg
	}
	fe := errors.Unwrap(ee.Err) // set only for "error calling <func>: %w"
	var own *ownError
	if fe == nil || errors.As(fe, &own) {
		return msg
	}
	detail := fe.Error()
	if i := strings.LastIndex(msg, detail); i >= 0 && detail != "" {
		return msg[:i] + withheld + msg[i+len(detail):]
	}
	// The detail is not where expected: keep only the part before it.
	if i := strings.Index(msg, "error calling "); i >= 0 {
		return msg[:i] + "error calling a function: " + withheld
	}
	return withheld
}

// parsedTemplates caches parsed templates by field path and text: every
// backup of a workload renders the same blueprint strings, and a parsed
// template may be executed concurrently. Bounded, since blueprints are few.
var parsedTemplates = struct {
	sync.Mutex
	m map[[2]string]*template.Template
}{m: map[[2]string]*template.Template{}}

const maxParsedTemplates = 4096

func parsed(path, text string, fm template.FuncMap) (*template.Template, error) {
	key := [2]string{path, text}
	parsedTemplates.Lock()
	t, ok := parsedTemplates.m[key]
	parsedTemplates.Unlock()
	if ok {
		return t, nil
	}
	t, err := newTemplate(path, fm).Parse(text)
	if err != nil {
		return nil, err
	}
	parsedTemplates.Lock()
	if len(parsedTemplates.m) < maxParsedTemplates {
		parsedTemplates.m[key] = t
	}
	parsedTemplates.Unlock()
	return t, nil
}

func newTemplate(name string, fm template.FuncMap) *template.Template {
	return template.New(name).Option("missingkey=error").Funcs(fm)
}

// RenderObjects renders the phase's object references (every string field
// may be a template, as in Kanister). The caller fetches the objects and puts
// them in params.Phases[p.Name] before calling RenderArgs.
func (p Phase) RenderObjects(params Params) (map[string]ObjectReference, error) {
	fm := funcMap()
	secrets := params.SecretValues()
	out := make(map[string]ObjectReference, len(p.Objects))
	for _, alias := range sortedKeys(p.Objects) {
		ref := p.Objects[alias]
		fields := []struct {
			name string
			v    *string
		}{
			{"apiVersion", &ref.APIVersion}, {"group", &ref.Group}, {"resource", &ref.Resource},
			{"kind", &ref.Kind}, {"name", &ref.Name}, {"namespace", &ref.Namespace},
		}
		for _, f := range fields {
			path := "objects." + alias + "." + f.name
			s, err := renderString(path, *f.v, params, fm, secrets)
			if err != nil {
				return nil, p.errorf(path, err)
			}
			*f.v = s
		}
		if ref.Name == "" {
			return nil, p.errorf("objects."+alias+".name", kindErr(ErrMissingArg, "renders empty"))
		}
		if ref.Namespace == "" {
			return nil, p.errorf("objects."+alias+".namespace", kindErr(ErrMissingArg, "renders empty"))
		}
		out[alias] = ref
	}
	return out, nil
}

// RenderArgs renders every string in the phase's args, at any depth. Lists
// come back as []any and maps as map[string]any; other scalars are unchanged.
// Errors name the field (args.command[2]) and never contain a secret value
// from params.
func (p Phase) RenderArgs(params Params) (map[string]any, error) {
	fm := funcMap()
	secrets := params.SecretValues()
	out := make(map[string]any, len(p.Args))
	for _, k := range sortedKeys(p.Args) {
		v, err := renderValue("args."+k, p.Args[k], params, fm, secrets)
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				e.Blueprint, e.Action, e.Phase = p.blueprint, p.action, p.Name
				return nil, e
			}
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

func renderValue(path string, v any, params Params, fm template.FuncMap, secrets [][]byte) (any, error) {
	switch v := v.(type) {
	case string:
		s, err := renderString(path, v, params, fm, secrets)
		if err != nil {
			return nil, &Error{Field: path, Err: err}
		}
		return s, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			r, err := renderValue(fmt.Sprintf("%s[%d]", path, i), e, params, fm, secrets)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case []string:
		out := make([]any, len(v))
		for i, e := range v {
			r, err := renderValue(fmt.Sprintf("%s[%d]", path, i), e, params, fm, secrets)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case map[string]any:
		return renderMap(path, v, params, fm, secrets)
	case map[string]string:
		return renderMap(path, v, params, fm, secrets)
	case nil, bool, int, int32, int64, float32, float64:
		return v, nil
	default:
		return nil, &Error{Field: path, Err: kindErr(ErrBadArg, fmt.Sprintf("unsupported value of type %T", v))}
	}
}

// renderString parses and executes one template. The error it returns is
// rebuilt from the redacted message: text/template quotes data in some
// errors (a failing function's message, a value that cannot be ranged over,
// a map key computed from a secret), and the original error would still hold
// it for anyone who unwraps.
//
// Options whose values are not SafeOption reach the result only through
// shellquote, or the render fails (see renderGuarded).
func renderString(path, text string, params Params, fm template.FuncMap, secrets [][]byte) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil // a literal: no need to parse
	}
	t, err := parsed(path, text, fm)
	if err != nil {
		return "", kindErr(ErrTemplate, Redact(err.Error(), secrets))
	}
	return renderGuarded(text, params, unsafeOptionsOf(params.Options), func(params Params) (string, error) {
		return execute(t, params, secrets)
	})
}

func execute(t *template.Template, params Params, secrets [][]byte) (string, error) {
	b := limitedBuilder{max: MaxRenderedSize}
	if err := t.Execute(&b, params); err != nil {
		if errors.Is(err, errTooLong) {
			return "", kindErr(ErrTemplate, fmt.Sprintf("renders more than %d bytes", MaxRenderedSize))
		}
		return "", kindErr(ErrTemplate, Redact(execErrorMessage(err, secrets), secrets))
	}
	return b.String(), nil
}

// MaxRenderedSize bounds what one template string may render to. Hook
// commands are a line or a short script; a render past this is a mistake
// or an attack, stopped before it grows further.
const MaxRenderedSize = 64 << 10

// MaxListLength bounds the lists until, untilStep and seq build.
const MaxListLength = 10_000

var errTooLong = errors.New("rendered text too long")

// limitedBuilder is a strings.Builder that refuses to grow past max: the
// template engine stops at the first failed write.
type limitedBuilder struct {
	strings.Builder
	max int
}

func (b *limitedBuilder) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, errTooLong
	}
	return b.Builder.Write(p)
}

func (b *limitedBuilder) WriteString(s string) (int, error) {
	if b.Len()+len(s) > b.max {
		return 0, errTooLong
	}
	return b.Builder.WriteString(s)
}

// strictIndex is text/template's index, except that a missing map key is an
// error (see funcMap).
func strictIndex(item reflect.Value, indexes ...reflect.Value) (reflect.Value, error) {
	item = indirect(item)
	if !item.IsValid() {
		return reflect.Value{}, &ownError{"index of untyped nil"}
	}
	for _, ix := range indexes {
		ix = indirect(ix)
		switch item.Kind() {
		case reflect.Array, reflect.Slice, reflect.String:
			i, err := intIndex(ix, item.Len())
			if err != nil {
				return reflect.Value{}, err
			}
			item = item.Index(i)
		case reflect.Map:
			key, err := mapKey(ix, item.Type().Key())
			if err != nil {
				return reflect.Value{}, err
			}
			v := item.MapIndex(key)
			if !v.IsValid() {
				if key.Kind() == reflect.String {
					return reflect.Value{}, ownErrorf("map has no entry for key %q", key.String())
				}
				return reflect.Value{}, ownErrorf("map has no entry for key %v", key)
			}
			item = v
		case reflect.Invalid:
			return reflect.Value{}, &ownError{"index of nil"}
		default:
			return reflect.Value{}, ownErrorf("can't index item of type %s", item.Type())
		}
		item = indirect(item)
	}
	return item, nil
}

// indirect strips interfaces and pointers, as the template engine does before
// indexing.
func indirect(v reflect.Value) reflect.Value {
	for v.IsValid() && (v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer) {
		if v.IsNil() {
			return reflect.Value{}
		}
		v = v.Elem()
	}
	return v
}

func intIndex(ix reflect.Value, n int) (int, error) {
	var i int64
	switch ix.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i = ix.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if ix.Uint() >= uint64(n) {
			return 0, ownErrorf("index out of range: %d", ix.Uint())
		}
		i = int64(ix.Uint())
	case reflect.Invalid:
		return 0, &ownError{"cannot index slice/array with nil"}
	default:
		return 0, ownErrorf("cannot index slice/array with type %s", ix.Type())
	}
	if i < 0 || i >= int64(n) {
		return 0, ownErrorf("index out of range: %d", i)
	}
	return int(i), nil
}

func mapKey(ix reflect.Value, keyType reflect.Type) (reflect.Value, error) {
	if !ix.IsValid() {
		return reflect.Value{}, &ownError{"cannot index map with nil"}
	}
	if ix.Type().AssignableTo(keyType) {
		return ix, nil
	}
	// Template constants arrive as int or string; let them index maps keyed
	// by another integer or string type, as the builtin index does.
	if sameClass(ix.Kind(), keyType.Kind()) && ix.Type().ConvertibleTo(keyType) {
		return ix.Convert(keyType), nil
	}
	return reflect.Value{}, ownErrorf("value has type %s; should be %s", ix.Type(), keyType)
}

func sameClass(a, b reflect.Kind) bool {
	isInt := func(k reflect.Kind) bool { return k >= reflect.Int && k <= reflect.Uintptr }
	return a == b || (isInt(a) && isInt(b))
}

// renderMap renders every value of a map, in key order so that the first
// error reported is always the same one.
func renderMap[V any](path string, m map[string]V, params Params, fm template.FuncMap, secrets [][]byte) (map[string]any, error) {
	out := make(map[string]any, len(m))
	for _, k := range sortedKeys(m) {
		r, err := renderValue(path+"."+k, m[k], params, fm, secrets)
		if err != nil {
			return nil, err
		}
		out[k] = r
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
