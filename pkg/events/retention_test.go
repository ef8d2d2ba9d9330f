package events_test

import (
	"slices"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
)

func TestRetainKeepsTheNewestCompleteBackupsThatEndedWell(t *testing.T) {
	t0 := time.Date(2026, 10, 1, 2, 0, 0, 0, time.UTC)
	good := func(id string, h int) events.RetainedBackup {
		return events.RetainedBackup{ID: id, CutAt: t0.Add(time.Duration(h) * time.Hour), Complete: true, Ended: true, Succeeded: true}
	}
	failed := good("failed", 5)
	failed.Succeeded = false
	notReady := good("not-ready", 6)
	notReady.Complete = false
	inFlight := good("in-flight", 7)
	inFlight.InFlight = true
	notEnded := good("not-ended", 8)
	notEnded.Ended = false
	// Given out of order: verdicts follow the input, judged newest first.
	backups := []events.RetainedBackup{good("b1", 1), failed, good("b4", 4), notReady, good("b3", 3), inFlight, good("b2", 2), notEnded}

	for _, tt := range []struct {
		name        string
		keep, taken int
		want        []events.RetentionVerdict
	}{
		{"off", 0, 1, []events.RetentionVerdict{"keep", "keep", "keep", "keep", "keep", "keep", "keep", "keep"}},
		{"keep 2, one place taken by the new backup", 2, 1, []events.RetentionVerdict{"prune", "discard", "keep", "skip", "prune", "skip", "prune", "skip"}},
		{"keep 2, the new backup not counted", 2, 0, []events.RetentionVerdict{"prune", "discard", "keep", "skip", "keep", "skip", "prune", "skip"}},
		{"keep more than there are", 10, 1, []events.RetentionVerdict{"keep", "discard", "keep", "skip", "keep", "skip", "keep", "skip"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := events.Retain(tt.keep, tt.taken, backups); !slices.Equal(got, tt.want) {
				t.Errorf("Retain(%d, %d) = %v, want %v", tt.keep, tt.taken, got, tt.want)
			}
		})
	}

	// Equal cut times: the greater id is the newer (ids sort by creation).
	tie := []events.RetainedBackup{good("bk-a", 1), good("bk-b", 1)}
	if got := events.Retain(2, 1, tie); !slices.Equal(got, []events.RetentionVerdict{"prune", "keep"}) {
		t.Errorf("tie: %v", got)
	}
}
