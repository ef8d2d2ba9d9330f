package blueprint

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// ErrUnquotedOption: an option value that is not plainly safe would reach a
// rendered argument other than through shellquote. Options come from
// whoever may request a backup or write a BackupPolicy, not from the
// blueprint's author, so a value such as "x; touch /tmp/pwned" must never
// be spliced into a `bash -c` script as is.
var ErrUnquotedOption = errors.New("option not quoted")

// SafeOptionChars are the characters an option value may hold and still be
// used in a template as is. None of them means anything to a POSIX shell.
const SafeOptionChars = "A-Za-z0-9._:/=@,+-"

// SafeOption reports whether v may reach a command without shellquote: it
// holds only SafeOptionChars (the empty value is safe too).
func SafeOption(v string) bool {
	for i := 0; i < len(v); i++ {
		if !safeOptionByte(v[i]) {
			return false
		}
	}
	return true
}

func safeOptionByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("._:/=@,+-", c) >= 0
}

// ShellQuote quotes s as one word of a POSIX shell command: unchanged when
// it is non-empty and holds only SafeOptionChars, else in single quotes,
// inside which a shell interprets nothing (a single quote in s becomes
// '\”).
func ShellQuote(s string) string {
	if s != "" && SafeOption(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// How "only through shellquote" is enforced: a template never sees the
// value of an unsafe option. It renders with a placeholder in its place,
// which shellquote turns into a second placeholder; after rendering, that
// one is replaced with the quoted value. A placeholder left anywhere else
// means the option was used unquoted. The template is rendered twice, with
// two different placeholders: if the results differ, the option changed the
// output some other way (b64enc, upper, trunc) and is refused too. Unsafe
// values are rare, so the second render costs nothing in the usual case.
//
// The placeholders carry a random token drawn once per process, digits
// only, so that case changes keep it whole and no request can forge it.
var optionTokens = sync.OnceValue(func() [2]string {
	var t [2]string
	for i := range t {
		n, err := rand.Int(rand.Reader, new(big.Int).Exp(big.NewInt(10), big.NewInt(24), nil))
		if err != nil {
			panic(fmt.Sprintf("blueprint: no randomness for option placeholders: %v", err)) // crypto/rand does not fail on supported platforms
		}
		t[i] = fmt.Sprintf("%024d", n)
	}
	return t
})

const (
	rawOptionPrefix    = "ffopt"
	quotedOptionPrefix = "ffqtd"
)

func placeholder(prefix, token string, i int) string {
	return prefix + token + "." + strconv.Itoa(i) + "."
}

// shellquoteFunc is the template function shellquote: ShellQuote, except
// that the placeholder of an unsafe option becomes the placeholder of its
// quoted value.
func shellquoteFunc(s string) string {
	for _, token := range optionTokens() {
		if rest, ok := strings.CutPrefix(s, rawOptionPrefix+token+"."); ok {
			if i, ok := strings.CutSuffix(rest, "."); ok {
				if _, err := strconv.Atoi(i); err == nil {
					return quotedOptionPrefix + token + "." + i + "."
				}
			}
		}
	}
	return ShellQuote(s)
}

// unsafeOptions are the options of one render whose values are not
// SafeOption, indexed as in their placeholders.
type unsafeOptions struct {
	names  []string
	values []string
}

// unsafeOptionsOf returns nil when every option is safe, without
// allocating: it runs for every template string rendered.
func unsafeOptionsOf(opts map[string]string) *unsafeOptions {
	allSafe := true
	for _, v := range opts {
		if !SafeOption(v) {
			allSafe = false
			break
		}
	}
	if allSafe {
		return nil
	}
	var u *unsafeOptions
	for _, name := range sortedKeys(opts) {
		if !SafeOption(opts[name]) {
			if u == nil {
				u = &unsafeOptions{}
			}
			u.names = append(u.names, name)
			u.values = append(u.values, opts[name])
		}
	}
	return u
}

// params returns a copy of p whose unsafe options hold the placeholders of
// token run (0 or 1).
func (u *unsafeOptions) params(p Params, run int) Params {
	opts := make(map[string]string, len(p.Options))
	for k, v := range p.Options {
		opts[k] = v
	}
	token := optionTokens()[run]
	for i, name := range u.names {
		opts[name] = placeholder(rawOptionPrefix, token, i)
	}
	p.Options = opts
	return p
}

// resolve replaces the quoted placeholders of run in out with the quoted
// values, and fails if any other trace of an unsafe option remains.
func (u *unsafeOptions) resolve(out string, run int) (string, error) {
	token := optionTokens()[run]
	if !strings.Contains(out, token) {
		return out, nil
	}
	for i, v := range u.values {
		out = strings.ReplaceAll(out, placeholder(quotedOptionPrefix, token, i), ShellQuote(v))
	}
	if len(out) > MaxRenderedSize {
		return "", kindErr(ErrTemplate, fmt.Sprintf("renders more than %d bytes", MaxRenderedSize))
	}
	if !strings.Contains(out, token) {
		return out, nil
	}
	// Name the options whose placeholder is still there; if none is whole
	// (sliced by trunc, say), name them all.
	var names []string
	for i, name := range u.names {
		if strings.Contains(out, token+"."+strconv.Itoa(i)+".") {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		names = u.names
	}
	return "", u.unquotedError(names, "")
}

// unquotedError names the options; how, when set, says what the template
// did with them.
func (u *unsafeOptions) unquotedError(names []string, how string) error {
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", n)
	}
	noun, verb := "option", "has"
	if len(names) > 1 {
		noun, verb = "options", "have"
	}
	if how != "" {
		how = "; the template " + how
	}
	// The value is not quoted back: it is the request's, and may be an
	// attempt at injection that a log should not carry further.
	return kindErr(ErrUnquotedOption, fmt.Sprintf(
		"%s %s %s characters outside [%s] and must reach commands only through shellquote (write {{ .Options.%s | shellquote }})%s; otherwise request the backup with a plainly safe value",
		noun, b.String(), verb, SafeOptionChars, names[0], how))
}

// renderGuarded renders text as renderString does, keeping unsafe options
// out of the result except through shellquote (see optionTokens).
func renderGuarded(text string, params Params, u *unsafeOptions, render func(Params) (string, error)) (string, error) {
	if u == nil || !strings.Contains(text, "{{") {
		return render(params)
	}
	if !strings.Contains(text, "Options") {
		// Cannot reach an option except through a variable holding the
		// whole params ({{ range $k, $v := $ }}): render once and look for
		// a placeholder, without the comparison, which a template using
		// rand functions would fail.
		out, err := render(u.params(params, 0))
		if err != nil {
			return "", u.scrub(err, 0)
		}
		return u.resolve(out, 0)
	}
	var outs [2]string
	for run := range outs {
		out, err := render(u.params(params, run))
		if err != nil {
			return "", u.scrub(err, run)
		}
		if outs[run], err = u.resolve(out, run); err != nil {
			return "", err
		}
	}
	if outs[0] != outs[1] {
		return "", u.unquotedError(append([]string(nil), u.names...), "changes the rendered text other than through shellquote (b64enc, trunc, ...)")
	}
	return outs[0], nil
}

// scrub rewrites a template error (ErrTemplate, from execute) that quotes a
// placeholder ("strconv.Atoi: parsing \"ffopt...\"") to name the option
// instead: the token stays out of events and logs, and the message makes
// sense to the blueprint's author.
func (u *unsafeOptions) scrub(err error, run int) error {
	msg := err.Error()
	token := optionTokens()[run]
	if !strings.Contains(msg, token) {
		return err
	}
	for i, name := range u.names {
		msg = strings.ReplaceAll(msg, placeholder(rawOptionPrefix, token, i), "<option "+name+">")
		msg = strings.ReplaceAll(msg, placeholder(quotedOptionPrefix, token, i), "<option "+name+", quoted>")
	}
	msg = strings.ReplaceAll(msg, token, "<option>")
	return kindErr(ErrTemplate, msg)
}
