package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultStream is the name of the stream holding every backup event.
const DefaultStream = "FREEZEFRAME"

// StreamConfig sizes the backup event stream.
type StreamConfig struct {
	// Name of the stream; DefaultStream when empty.
	Name string
	// Replicas is 1 for a single server, 3 (or 5) in a JetStream cluster.
	Replicas int
	// MaxAge is how long events are kept; they are the audit trail of every
	// backup, so the default is a month.
	MaxAge time.Duration
	// Duplicates is the window in which a republished event id is dropped.
	// It must outlast the longest retry of a handler; default 1 hour.
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
	if c.Duplicates == 0 {
		c.Duplicates = time.Hour
	}
	return c
}

// EnsureStream creates the backup event stream, or updates it to cfg. Every
// service calls it at start, so no start order is needed.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	cfg = cfg.withDefaults()
	sc := jetstream.StreamConfig{
		Name:        cfg.Name,
		Description: "freezeframe backup events",
		Subjects:    []string{SubjectRoot + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.MaxAge,
		Duplicates:  cfg.Duplicates,
		Discard:     jetstream.DiscardOld,
	}
	s, err := js.CreateOrUpdateStream(ctx, sc)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) {
			return nil, fmt.Errorf("ensure stream %s: %w (JetStream error %d)", cfg.Name, err, apiErr.ErrorCode)
		}
		return nil, fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
	}
	return s, nil
}
