package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// Seen is an event as a raw subscriber saw it go by, and when.
type Seen struct {
	Event events.Event
	At    time.Time
}

// Observer records every backup event published (a core NATS subscription on
// freezeframe.backup.>: it sees a publish the moment the server routes it, which
// is what a kill "after Quiesced" needs).
type Observer struct {
	sub *nats.Subscription

	mu      sync.Mutex
	seen    []Seen
	errs    []error
	changed chan struct{} // closed and replaced on every event
}

// Observe subscribes on nc.
func Observe(nc *nats.Conn) (*Observer, error) {
	o := &Observer{changed: make(chan struct{})}
	sub, err := nc.Subscribe(events.SubjectRoot+".>", func(m *nats.Msg) {
		at := time.Now()
		ev, err := events.Decode(m.Header, m.Data)
		o.mu.Lock()
		defer o.mu.Unlock()
		if err != nil {
			o.errs = append(o.errs, fmt.Errorf("decode %s: %w", m.Subject, err))
			return
		}
		o.seen = append(o.seen, Seen{Event: ev, At: at})
		close(o.changed)
		o.changed = make(chan struct{})
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to backup events: %w", err)
	}
	if err := nc.Flush(); err != nil {
		return nil, fmt.Errorf("subscribe to backup events: %w", err)
	}
	o.sub = sub
	return o, nil
}

// Close ends the subscription.
func (o *Observer) Close() { _ = o.sub.Unsubscribe() }

// Seen returns what was seen of backup id so far.
func (o *Observer) Seen(id string) []Seen {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Seen
	for _, s := range o.seen {
		if s.Event.BackupID() == id {
			out = append(out, s)
		}
	}
	return out
}

// WaitKind waits until an event of kind k of backup id is seen and returns it.
func (o *Observer) WaitKind(ctx context.Context, id string, k events.Kind) (Seen, error) {
	for {
		o.mu.Lock()
		changed := o.changed
		o.mu.Unlock()
		for _, s := range o.Seen(id) {
			if s.Event.Kind() == k {
				return s, nil
			}
		}
		select {
		case <-ctx.Done():
			return Seen{}, fmt.Errorf("wait for %s of backup %s: %w", k, id, ctx.Err())
		case <-changed:
		}
	}
}

// Changed is closed on the next event.
func (o *Observer) Changed() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.changed
}

// Hook phases, as the chaos blueprint's marker files name them.
const (
	PreHook  = "pre"
	PostHook = "post"
)

// Marker is one hook run, from the file the hook wrote as it began.
type Marker struct {
	Phase string
	At    time.Time
}

// Markers lists the hook runs recorded in dir (files <phase>.<unix nanos>),
// oldest first.
func Markers(dir string) ([]Marker, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read markers: %w", err)
	}
	var out []Marker
	for _, e := range entries {
		phase, ns, ok := strings.Cut(e.Name(), ".")
		if !ok || (phase != PreHook && phase != PostHook) {
			continue
		}
		n, err := strconv.ParseInt(ns, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("read marker %s: %w", filepath.Join(dir, e.Name()), err)
		}
		out = append(out, Marker{Phase: phase, At: time.Unix(0, n)})
	}
	slices.SortFunc(out, func(a, b Marker) int { return a.At.Compare(b.At) })
	return out, nil
}

// WaitMarker waits until a marker of phase is written in dir.
func WaitMarker(ctx context.Context, dir, phase string) (Marker, error) {
	var found Marker
	err := poll(ctx, time.Hour, 10*time.Millisecond, phase+"-hook marker", func() (bool, error) {
		ms, err := Markers(dir)
		if err != nil {
			return false, err
		}
		for _, m := range ms {
			if m.Phase == phase {
				found = m
				return true, nil
			}
		}
		return false, nil
	})
	return found, err
}
