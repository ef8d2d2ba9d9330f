package blueprint

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func mustParse(t *testing.T, doc string) *Blueprint {
	t.Helper()
	bp, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return bp
}

func mustParseFile(t *testing.T, name string) *Blueprint {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return mustParse(t, string(data))
}

func mustAction(t *testing.T, bp *Blueprint, name string) *Action {
	t.Helper()
	a, err := bp.Action(name)
	if err != nil {
		t.Fatalf("Action(%q): %v", name, err)
	}
	return a
}

// blueprintWith wraps the YAML of one action's phases (indented as list items
// under "phases:") in a Blueprint named bp with one action, backupPrehook.
func blueprintWith(phases string) string {
	var b strings.Builder
	b.WriteString("apiVersion: freezeframe.io/v1alpha1\nkind: Blueprint\nmetadata:\n  name: bp\nactions:\n  backupPrehook:\n    phases:\n")
	for _, line := range strings.Split(strings.Trim(phases, "\n"), "\n") {
		b.WriteString("    " + line + "\n")
	}
	return b.String()
}

// allErrors flattens an error tree (Unwrap() error and Unwrap() []error).
func allErrors(err error) []error {
	if err == nil {
		return nil
	}
	out := []error{err}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = append(out, allErrors(e)...)
		}
	case interface{ Unwrap() error }:
		out = append(out, allErrors(u.Unwrap())...)
	}
	return out
}

// blueprintErrors returns the *Error values at the top of err (one, or the
// members of an errors.Join).
func blueprintErrors(err error) []*Error {
	var out []*Error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, blueprintErrors(e)...)
		}
		return out
	}
	var e *Error
	if errors.As(err, &e) {
		out = append(out, e)
	}
	return out
}

// assertNoSecret fails if the secret, or a common encoding of it, appears in
// the error or in anything it wraps.
func assertNoSecret(t *testing.T, err error, secret string) {
	t.Helper()
	q := strconv.Quote(secret)
	forms := []string{
		secret,
		strings.TrimSpace(secret),
		q[1 : len(q)-1],
		base64.StdEncoding.EncodeToString([]byte(secret)),
		fmt.Sprint([]byte(secret)),
	}
	for _, e := range allErrors(err) {
		for _, text := range []string{e.Error(), fmt.Sprintf("%v", e), fmt.Sprintf("%+v", e)} {
			for _, f := range forms {
				if f != "" && strings.Contains(text, f) {
					t.Fatalf("error leaks the secret (as %q): %s", f, text)
				}
			}
		}
	}
}
