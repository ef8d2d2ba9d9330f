package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultStream is the name of the stream holding every backup event.
const DefaultStream = "FREEZEFRAME"

// Stream limits applied when EnsureStream creates the stream.
const (
	// DefaultStreamMaxBytes bounds the stream's storage: 1 GiB holds about
	// a million events of 1 KiB, some 200,000 backups.
	DefaultStreamMaxBytes = 1 << 30
	// DefaultStreamMaxMsgs bounds the number of events kept.
	DefaultStreamMaxMsgs = 1_000_000
)

// StreamConfig sizes the backup event stream. Its limits (Replicas, MaxAge,
// MaxBytes, MaxMsgs) apply when EnsureStream creates the stream; a stream
// that exists keeps its own, which are the operator's to change (nats
// stream edit). Past a limit the oldest events are discarded.
type StreamConfig struct {
	// Name of the stream; DefaultStream when empty.
	Name string
	// Replicas is 1 for a single server, 3 (or 5) in a JetStream cluster.
	Replicas int
	// MaxAge is how long events are kept; they are the audit trail of every
	// backup, so the default is a month.
	MaxAge time.Duration
	// MaxBytes bounds the stream's storage; default DefaultStreamMaxBytes
	// (1 GiB). Negative: unlimited.
	MaxBytes int64
	// MaxMsgs bounds the number of events kept; default
	// DefaultStreamMaxMsgs (1,000,000). Negative: unlimited.
	MaxMsgs int64
	// Duplicates is the window in which a republished event id is dropped.
	// It must outlast the longest retry of a handler; default 1 hour. Unlike
	// the limits it is raised on an existing stream whose window is shorter
	// (up to that stream's MaxAge), since freezeframe's idempotence needs it.
	Duplicates time.Duration
}

func (c StreamConfig) withDefaults() StreamConfig {
	if c.Name == "" {
		c.Name = DefaultStream
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxAge == 0 {
		c.MaxAge = 30 * 24 * time.Hour
	}
	switch {
	case c.MaxBytes == 0:
		c.MaxBytes = DefaultStreamMaxBytes
	case c.MaxBytes < 0:
		c.MaxBytes = -1
	}
	switch {
	case c.MaxMsgs == 0:
		c.MaxMsgs = DefaultStreamMaxMsgs
	case c.MaxMsgs < 0:
		c.MaxMsgs = -1
	}
	if c.Duplicates == 0 {
		c.Duplicates = time.Hour
	}
	return c
}

// streamSubject is the subject filter the stream must hold.
const streamSubject = SubjectRoot + ".>"

// EnsureStream creates the backup event stream with cfg when it is missing.
// When it exists, it only adds what freezeframe needs and the stream lacks
// (the backup event subjects, a duplicates window as long as cfg's) and
// keeps everything else, the limits an operator set in particular. Setup
// calls it with admin rights; services only bind (BindStream).
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	cfg = cfg.withDefaults()
	s, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        cfg.Name,
			Description: "freezeframe backup events",
			Subjects:    []string{streamSubject},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			MaxAge:      cfg.MaxAge,
			MaxBytes:    cfg.MaxBytes,
			MaxMsgs:     cfg.MaxMsgs,
			Duplicates:  cfg.Duplicates,
			Discard:     jetstream.DiscardOld,
		})
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, streamError(cfg.Name, "create", err)
		}
		// Another service created it first, maybe with other limits.
		s, err = js.Stream(ctx, cfg.Name)
	}
	if err != nil {
		return nil, streamError(cfg.Name, "look up", err)
	}
	sc := s.CachedInfo().Config
	changed := false
	if !slices.ContainsFunc(sc.Subjects, func(f string) bool { return subjectCovers(f, streamSubject) }) {
		sc.Subjects = append(sc.Subjects, streamSubject)
		changed = true
	}
	if want := cfg.Duplicates; sc.Duplicates < want {
		// The server refuses a window longer than the stream's MaxAge.
		if sc.MaxAge > 0 {
			want = min(want, sc.MaxAge)
		}
		if sc.Duplicates < want {
			sc.Duplicates = want
			changed = true
		}
	}
	if !changed {
		return s, nil
	}
	if s, err = js.UpdateStream(ctx, sc); err != nil {
		return nil, streamError(cfg.Name, "update", err)
	}
	return s, nil
}

func streamError(name, verb string, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return fmt.Errorf("ensure stream %s: %s: %w (JetStream error %d)", name, verb, err, apiErr.ErrorCode)
	}
	return fmt.Errorf("ensure stream %s: %s: %w", name, verb, err)
}

// subjectCovers reports whether the subject filter f matches every subject
// that s does ("freezeframe.>" and ">" cover "freezeframe.backup.>").
func subjectCovers(f, s string) bool {
	ft, st := strings.Split(f, "."), strings.Split(s, ".")
	for i, t := range ft {
		if t == ">" {
			return i < len(st)
		}
		if i >= len(st) || st[i] == ">" || (t != "*" && t != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}
