package events_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

func TestEnsureStreamCreatesWithBoundedDefaults(t *testing.T) {
	srv := eventstest.NewBareServer(t)
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	s, err := events.EnsureStream(t.Context(), js, events.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c := s.CachedInfo().Config
	if c.MaxBytes != events.DefaultStreamMaxBytes || c.MaxMsgs != events.DefaultStreamMaxMsgs {
		t.Errorf("MaxBytes %d, MaxMsgs %d; want the defaults %d, %d", c.MaxBytes, c.MaxMsgs, int64(events.DefaultStreamMaxBytes), int64(events.DefaultStreamMaxMsgs))
	}
	if c.MaxAge != 30*24*time.Hour || c.Duplicates != time.Hour || c.Retention != jetstream.LimitsPolicy || c.Discard != jetstream.DiscardOld {
		t.Errorf("created with %+v", c)
	}
	if len(c.Subjects) != 1 || c.Subjects[0] != "freezeframe.backup.>" {
		t.Errorf("subjects %v", c.Subjects)
	}
	// Negative means unlimited, as in JetStream.
	js2, err := jetstream.New(eventstest.NewBareServer(t).Connect())
	if err != nil {
		t.Fatal(err)
	}
	s, err = events.EnsureStream(t.Context(), js2, events.StreamConfig{MaxBytes: -1, MaxMsgs: -5})
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; c.MaxBytes != -1 || c.MaxMsgs != -1 {
		t.Errorf("MaxBytes %d, MaxMsgs %d; want -1 (unlimited) for negative limits", c.MaxBytes, c.MaxMsgs)
	}
}

// A stream an operator sized keeps its limits when a service starts; the
// service adds only what it cannot work without.
func TestEnsureStreamKeepsWhatTheOperatorSet(t *testing.T) {
	tests := []struct {
		name         string
		operator     jetstream.StreamConfig
		wantSubjects []string
		wantDups     time.Duration
	}{
		{
			name: "limits set, subjects and window missing",
			operator: jetstream.StreamConfig{Name: events.DefaultStream, Subjects: []string{"audit.>"}, Storage: jetstream.FileStorage,
				MaxBytes: 10 << 20, MaxMsgs: 5000, MaxAge: 7 * 24 * time.Hour, Duplicates: time.Minute},
			wantSubjects: []string{"audit.>", "freezeframe.backup.>"},
			wantDups:     time.Hour,
		},
		{
			name: "a wider filter already covers the events",
			operator: jetstream.StreamConfig{Name: events.DefaultStream, Subjects: []string{"freezeframe.>"}, Storage: jetstream.FileStorage,
				MaxBytes: 10 << 20, MaxMsgs: -1, MaxAge: 2 * time.Hour, Duplicates: 2 * time.Hour},
			wantSubjects: []string{"freezeframe.>"},
			wantDups:     2 * time.Hour,
		},
		{
			name: "a window longer than MaxAge is refused by the server: raised to MaxAge",
			operator: jetstream.StreamConfig{Name: events.DefaultStream, Subjects: []string{"freezeframe.backup.>"}, Storage: jetstream.FileStorage,
				MaxBytes: 1 << 20, MaxAge: 20 * time.Minute, Duplicates: time.Minute},
			wantSubjects: []string{"freezeframe.backup.>"},
			wantDups:     20 * time.Minute,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := eventstest.NewBareServer(t)
			js, err := jetstream.New(srv.Connect())
			if err != nil {
				t.Fatal(err)
			}
			created, err := js.CreateStream(t.Context(), tt.operator)
			if err != nil {
				t.Fatal(err)
			}
			before := created.CachedInfo().Config
			// What a service passes at start, limits included.
			if _, err := events.EnsureStream(t.Context(), js, events.StreamConfig{Replicas: 1, MaxAge: 720 * time.Hour, MaxBytes: 1 << 30, MaxMsgs: 1_000_000}); err != nil {
				t.Fatal(err)
			}
			s, err := js.Stream(t.Context(), events.DefaultStream)
			if err != nil {
				t.Fatal(err)
			}
			got := s.CachedInfo().Config
			if got.MaxBytes != before.MaxBytes || got.MaxMsgs != before.MaxMsgs || got.MaxAge != before.MaxAge || got.Replicas != before.Replicas {
				t.Errorf("limits changed: MaxBytes %d→%d, MaxMsgs %d→%d, MaxAge %s→%s, Replicas %d→%d",
					before.MaxBytes, got.MaxBytes, before.MaxMsgs, got.MaxMsgs, before.MaxAge, got.MaxAge, before.Replicas, got.Replicas)
			}
			if !equalStrings(got.Subjects, tt.wantSubjects) {
				t.Errorf("subjects %v, want %v", got.Subjects, tt.wantSubjects)
			}
			if got.Duplicates != tt.wantDups {
				t.Errorf("duplicates window %s, want %s", got.Duplicates, tt.wantDups)
			}
			// Events flow through the stream as it is.
			if _, _, err := eventstest.NewPipeline(js).Publish(t.Context(), &events.BackupRequested{BackupRef: events.BackupRef{BackupID: "bk-op", Workload: redis}}); err != nil {
				t.Fatalf("publish onto the operator's stream: %v", err)
			}
			// A second start changes nothing.
			if _, err := events.EnsureStream(t.Context(), js, events.StreamConfig{}); err != nil {
				t.Fatal(err)
			}
			s, err = js.Stream(t.Context(), events.DefaultStream)
			if err != nil {
				t.Fatal(err)
			}
			if again := s.CachedInfo().Config; again.MaxBytes != before.MaxBytes || !equalStrings(again.Subjects, tt.wantSubjects) || again.Duplicates != tt.wantDups {
				t.Errorf("second start changed the stream: %+v", again)
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
