package events

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrForbiddenSource is returned, with ErrUndecodable, for an event whose
// CloudEvents source is not one allowed to emit its kind (see SourcesOf):
// a forged Resumed, UnlockRequested or Snapshotted, or a service publishing
// what another one owns. The bus's permissions should have refused the
// publish; this check holds when they are missing or too wide.
var ErrForbiddenSource = errors.New("event from a source not allowed to emit it")

// SourceError says which source sent an event of a kind it may not emit,
// and who may. It matches ErrForbiddenSource and ErrUndecodable: nothing
// acts on such an event, and redelivering it cannot help.
type SourceError struct {
	ID      string
	Kind    Kind
	Source  string
	Allowed []string
}

func (e *SourceError) Error() string {
	allowed := "nobody"
	switch n := len(e.Allowed); n {
	case 0:
	case 1:
		allowed = e.Allowed[0]
	default:
		allowed = strings.Join(e.Allowed[:n-1], ", ") + " or " + e.Allowed[n-1]
	}
	return fmt.Sprintf("event kind %s from source %s: only %s may emit it (event %s)", e.Kind, short(e.Source), allowed, short(e.ID))
}

func (e *SourceError) Unwrap() []error { return []error{ErrUndecodable, ErrForbiddenSource} }

// CheckSource reports whether ev comes from a source allowed to emit its
// kind: nil, or a *SourceError. DecodeMessage calls it, so every consumer,
// Lookup and the Client's readers refuse such an event; a Publisher calls it
// before sending, so a misconfigured source fails at the publish, loudly.
func CheckSource(ev Event) error {
	k := ev.Kind()
	allowed := allowedSources[k]
	if src := ev.CloudEvent.Source(); !slices.Contains(allowed, src) {
		return &SourceError{ID: ev.CloudEvent.ID(), Kind: k, Source: src, Allowed: slices.Clone(allowed)}
	}
	return nil
}

// allowedSources is SourcesOf for every kind, computed once from the access
// table: CheckSource runs on every hop and should not build the list each
// time. Read only.
var allowedSources = func() map[Kind][]string {
	m := make(map[Kind][]string, len(Kinds()))
	for _, k := range Kinds() {
		m[k] = SourcesOf(k)
	}
	return m
}()
