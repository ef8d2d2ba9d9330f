package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/test/e2e/consistency"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// What the application feels (issue 16, item 1): a writer against each real
// database writes one key at a time, each after the previous one was
// acknowledged. Its pause for a backup is the longest time with no
// acknowledgement during the round; set beside the storage's cut
// (Snapshotted.CutDuration) it shows how much of the pause is ours.

// writerSpacing is the pause between one writer's writes when n writers run
// at once. Each Redis write is fsynced (appendfsync always): one writer every
// millisecond gives the pause ~1 ms resolution, but 50 of them would ask for
// ~40,000 fsynced writes a second, more than 2 cores serve (redis-benchmark
// with 50 clients: ~25,000/s with nothing else running). So the writers share
// a budget of 10,000 writes a second: 1 ms apart up to 10 writers, 5 ms at 50.
func writerSpacing(n int) time.Duration {
	return max(time.Millisecond, time.Duration(n)*100*time.Microsecond)
}

// roundWriters is one writer per database, running for one round.
type roundWriters struct {
	spacing time.Duration
	writers []*consistency.Writer
}

// startWriters starts a writer against every database, and returns once each
// has had a write acknowledged, so that the round starts with them writing.
func startWriters(b *testing.B, dbs []*sandbox.Database) *roundWriters {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
	defer cancel()
	rw := &roundWriters{spacing: writerSpacing(len(dbs)), writers: make([]*consistency.Writer, len(dbs))}
	errs := make([]error, len(dbs))
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Go(func() {
			addr := net.JoinHostPort(db.Host, strconv.Itoa(db.Port))
			w, err := consistency.StartRedisWriter(ctx, addr, db.Password, "bench", rw.spacing)
			if err != nil {
				errs[i] = fmt.Errorf("writer on %s/%s: %w", db.Namespace, db.Workload, err)
				return
			}
			rw.writers[i] = w
			if err := w.WaitAcked(ctx, 1); err != nil {
				errs[i] = fmt.Errorf("writer on %s/%s: %w", db.Namespace, db.Workload, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		rw.stopAll()
		b.Fatal(err)
	}
	return rw
}

func (rw *roundWriters) stopAll() {
	for _, w := range rw.writers {
		if w != nil {
			_, _ = w.Stop(5 * time.Second)
		}
	}
}

// pauses waits until every writer has a write acknowledged after end (so a
// pause still open at end is closed), stops the writers, and returns each
// one's pause over [start, end]: its longest gap between consecutive
// acknowledgements, in the order of the databases given to startWriters. A
// writer that failed (a write refused, the connection lost) fails the
// benchmark: the application did not get through the backup.
func (rw *roundWriters) pauses(b *testing.B, start, end time.Time) []time.Duration {
	b.Helper()
	defer rw.stopAll()
	ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
	defer cancel()
	out := make([]time.Duration, len(rw.writers))
	for i, w := range rw.writers {
		if _, err := w.WaitAckedAfter(ctx, end); err != nil {
			b.Fatalf("writer %d after the round: %v", i, err)
		}
		writes, err := w.Stop(5 * time.Second)
		if err != nil {
			b.Fatalf("writer %d: %v", i, err)
		}
		out[i] = longestAckGap(writes, start, end)
	}
	return out
}

// longestAckGap is the longest time between two consecutive acknowledged
// writes whose interval overlaps [start, end]. Writes are one at a time, so
// acknowledgements come in order; an unacknowledged write ends the record
// (Stop cut it short).
func longestAckGap(writes []consistency.Write, start, end time.Time) time.Duration {
	var longest time.Duration
	var prev time.Time
	for _, w := range writes {
		if w.Acked.IsZero() {
			break
		}
		if !prev.IsZero() && w.Acked.After(start) && prev.Before(end) {
			longest = max(longest, w.Acked.Sub(prev))
		}
		prev = w.Acked
	}
	return longest
}
