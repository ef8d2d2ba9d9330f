package blueprint

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Redacted replaces a secret value in text.
const Redacted = "[REDACTED]"

// Redact replaces in s every occurrence of each non-empty secret, and of the
// forms a secret takes on its way into a log or an error: base64 (padded or
// not, standard or URL alphabet, as in a Secret manifest), hex, Go-quoted (%q,
// ASCII-only %+q, and the \xNN style of the time package), JSON-escaped,
// URL-escaped, printed as a byte slice (a template that forgot toString), and
// the same for the value with surrounding whitespace trimmed (a Secret made
// with `echo` ends in a newline the command line never shows). Overlapping
// occurrences become one [REDACTED], so no fragment of a secret survives.
//
// Even one-character secrets are replaced: an unreadable log is better than a
// leaked password.
func Redact(s string, secrets [][]byte) string {
	seen := map[string]bool{}
	var forms []string
	add := func(f string) {
		if f != "" && !seen[f] {
			seen[f] = true
			forms = append(forms, f)
		}
	}
	for _, sec := range secrets {
		bases := [][]byte{sec}
		if t := bytes.TrimSpace(sec); len(t) > 0 && len(t) != len(sec) {
			bases = append(bases, t)
		}
		for _, b := range bases {
			if len(b) == 0 {
				continue
			}
			add(string(b))
			add(base64.StdEncoding.EncodeToString(b))
			add(base64.RawStdEncoding.EncodeToString(b))
			add(base64.URLEncoding.EncodeToString(b))
			add(base64.RawURLEncoding.EncodeToString(b))
			add(hex.EncodeToString(b))
			add(strings.ToUpper(hex.EncodeToString(b)))
			q := strconv.Quote(string(b))
			add(q[1 : len(q)-1])
			q = strconv.QuoteToASCII(string(b))
			add(q[1 : len(q)-1])
			add(hexEscaped(b))
			add(jsonEscaped(b, true))
			add(jsonEscaped(b, false))
			add(url.QueryEscape(string(b)))
			add(url.PathEscape(string(b)))
			add(fmt.Sprint(b)) // [115 51 99 ...]
		}
	}
	if len(forms) == 0 {
		return s
	}
	// Mark every byte covered by any occurrence of any form, then replace
	// each run of marked bytes once. Replacing form by form could leave part
	// of a secret behind when two occurrences overlap ("ab" and "bcd" in
	// "abcd").
	covered := make([]bool, len(s))
	found := false
	for _, f := range forms {
		for from := 0; from < len(s); {
			i := strings.Index(s[from:], f)
			if i < 0 {
				break
			}
			for k := from + i; k < from+i+len(f); k++ {
				covered[k] = true
			}
			found = true
			from += i + 1
		}
	}
	if !found {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if !covered[i] {
			b.WriteByte(s[i])
			i++
			continue
		}
		b.WriteString(Redacted)
		for i < len(s) && covered[i] {
			i++
		}
	}
	return b.String()
}

// hexEscaped is the quoting of the time package's parse errors: bytes that
// are control characters or not ASCII become \xNN, quote and backslash get a
// backslash.
func hexEscaped(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		switch {
		case c < ' ' || c >= 0x80:
			s.WriteString(`\x`)
			s.WriteByte(digits[c>>4])
			s.WriteByte(digits[c&0xf])
		case c == '"' || c == '\\':
			s.WriteByte('\\')
			s.WriteByte(c)
		default:
			s.WriteByte(c)
		}
	}
	return s.String()
}

// jsonEscaped is b as the inside of a JSON string, with or without the HTML
// escapes (\u003c) of encoding/json's default.
func jsonEscaped(b []byte, escapeHTML bool) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(escapeHTML)
	if err := enc.Encode(string(b)); err != nil {
		return ""
	}
	j := bytes.TrimSpace(buf.Bytes())
	return string(j[1 : len(j)-1])
}
