package events

import (
	"time"
)

// FreezesBucket is the JetStream key-value bucket of freeze leases: one key
// per frozen workload, written by the hooker replica holding the freeze and
// judged by the watchdogs. The snapshotter writes its progress beside them.
const FreezesBucket = "freezeframe-freezes"

// SnapshotProgressPrefix starts the key under which the snapshotter reports
// that the snapshot of a frozen workload is progressing. Lease keys never
// start with '_'.
const SnapshotProgressPrefix = "_snapshot."

// SnapshotProgressKey is the progress key of a workload: the prefix, then
// the workload's lease key.
func SnapshotProgressKey(w Workload) (string, error) {
	kind, err := NormalizeKind(w.Kind)
	if err != nil {
		return "", err
	}
	w.Kind = kind
	return SnapshotProgressPrefix + w.Key(), nil
}

// SnapshotProgress is the value of a progress key, rewritten every second or
// so while a snapshotter replica creates a frozen workload's snapshots and
// waits for the cut, and deleted when it is done. A watchdog that sees it
// go silent while the workload is frozen knows the snapshot no longer
// progresses and resumes the application without waiting for the freeze
// cap.
type SnapshotProgress struct {
	BackupID string `json:"backupId"`
	// Replica is the snapshotter replica doing the work.
	Replica   string    `json:"replica"`
	RenewedAt time.Time `json:"renewedAt"`
}
