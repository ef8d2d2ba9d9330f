package events

import (
	"cmp"
	"slices"
	"time"
)

// Retention's rule, in one place: the snapshotter applies it once a backup
// is ready, and the catalog ([Client.Backups]) shows what it will do next.

// RetainedBackup is one backup of a workload as retention judges it: from
// the snapshots in the cluster, and from its freeze's recorded end.
type RetainedBackup struct {
	ID string
	// CutAt is the latest cut among its snapshots; newer backups are kept
	// first.
	CutAt time.Time
	// Complete: every one of its snapshots is cut, ready to use, without
	// error and not being deleted.
	Complete bool
	// InFlight: a snapshotter is still cutting it or following it to
	// readiness.
	InFlight bool
	// Ended: its freeze's end is recorded ([FreezeEnd]); Succeeded is what
	// the end says.
	Ended     bool
	Succeeded bool
}

// RetentionVerdict is what retention does with one backup.
type RetentionVerdict string

// Retention verdicts.
const (
	// RetentionKeep: counted among the backups kept (or retention is off).
	RetentionKeep RetentionVerdict = "keep"
	// RetentionPrune: complete and succeeded, but older than the backups
	// kept: its snapshots are deleted.
	RetentionPrune RetentionVerdict = "prune"
	// RetentionDiscard: its freeze ended in failure, so its snapshots are
	// not consistent: what is left of them is deleted.
	RetentionDiscard RetentionVerdict = "discard"
	// RetentionSkip: in flight, not complete, or with no recorded end:
	// never deleted and never counted.
	RetentionSkip RetentionVerdict = "skip"
)

// Retain applies retention to the backups of one workload, as it runs when
// a new backup becomes ready: keep is that backup's snapshotsToKeep, and
// taken the places already held (1 when the new backup, not among backups,
// ended well, so that a backup that turns out failed never costs an older
// good one). Only complete backups whose end says succeeded count; the
// newest of them (by CutAt, then by id) fill the keep−taken places left
// and the older ones are pruned. A backup in flight, not complete or not
// ended is never deleted; one that ended in failure is discarded. With
// keep ≤ 0 retention is off: every backup is kept.
//
// It returns one verdict per backup, in the order of backups.
func Retain(keep, taken int, backups []RetainedBackup) []RetentionVerdict {
	out := make([]RetentionVerdict, len(backups))
	if keep <= 0 {
		for i := range out {
			out[i] = RetentionKeep
		}
		return out
	}
	order := make([]int, len(backups))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		if c := backups[b].CutAt.Compare(backups[a].CutAt); c != 0 {
			return c
		}
		return cmp.Compare(backups[b].ID, backups[a].ID)
	})
	kept := taken
	for _, i := range order {
		b := backups[i]
		switch {
		case !b.Complete || b.InFlight || !b.Ended:
			out[i] = RetentionSkip
		case !b.Succeeded:
			out[i] = RetentionDiscard
		case kept < keep:
			kept++
			out[i] = RetentionKeep
		default:
			out[i] = RetentionPrune
		}
	}
	return out
}
