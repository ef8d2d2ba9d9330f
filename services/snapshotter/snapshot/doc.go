// Package snapshot is the snapshotter service: on Quiesced it takes one CSI
// VolumeSnapshot of every PersistentVolumeClaim the workload's running pods
// mount, and publishes Snapshotted as soon as every snapshot is cut, or
// BackupFailed (step "snapshot", ResumePending) when it cannot be. The
// application is frozen for the whole time this package works, so every
// path ends in one of those two events and nothing waits that need not.
//
// # Cut, not ready
//
// A snapshot is cut when the storage sets status.creationTime; readyToUse can
// follow minutes later (an upload on cloud providers) and does not need the
// application frozen. Snapshotted is published at the cut, as KubeVirt does.
// A snapshot whose status reports an error before then fails the backup at
// once; one not cut within CutTimeout, or before the Quiesced event's freeze
// deadline, fails it too.
//
// # Only inside a freeze
//
// The hooker publishes Quiesced once the freeze record says frozen, with the
// freeze's epoch (its fencing token). Before it creates anything, the
// snapshotter checks that the record still says frozen at that epoch; a
// Quiesced that is late, redelivered after the backup ended, or forged is
// terminated with the reason, and nothing is cut or deleted. After the cut
// it checks again: the hooker moves the record to resuming before any
// post-hook runs, so a record still frozen proves the freeze held through
// the cut. Otherwise the snapshots are deleted and the backup fails (step
// snapshot, "the freeze ended before the cut was confirmed"), unless the
// backup already ended with success through another delivery. See
// fence.go.
//
// # Idempotence
//
// Snapshot names are derived from the backup id and the claim
// ([SnapshotName]), so a redelivered Quiesced finds the snapshots it created
// before (AlreadyExists) and waits on them instead of cutting new ones. The
// published events have deterministic ids, so the stream drops a second
// Snapshotted or BackupFailed of the same backup.
//
// # Watching
//
// One shared informer follows every VolumeSnapshot labelled with
// [LabelBackupID], cluster-wide, and wakes the handlers waiting on them. No
// handler opens its own watch or polls: between freeze and resume the only
// Kubernetes calls are the workload lookup and the creates, made
// concurrently. The service account needs get on deployments and
// statefulsets, list on pods, and create, get, list and watch on
// volumesnapshots.snapshot.storage.k8s.io (list and watch in all
// namespaces, for the shared informer).
//
// # Retention
//
// Readiness waits for the backup's end too (events.FreezeEnd, recorded by
// the hooker right after the resume, or by a replica that took the freeze
// over, within the freeze cap), up to ReadyTimeout: SnapshotReady says the
// backup is complete. A backup whose freeze ended in failure after its cut
// has its snapshots deleted and no SnapshotReady.
// Retention keeps the newest SnapshotsToKeep backups that are ready and
// ended with success; backups not ended (or from before the end was
// recorded) are never deleted and never counted, and a failed backup's
// leftover snapshots are deleted.
//
// # Retries
//
// A transient API failure (timeout, throttling, 5xx, a dropped connection)
// redelivers the Quiesced with a short backoff, since the application stays
// frozen meanwhile; on the last delivery attempt BackupFailed is published
// instead, so a frozen application is never left without an event. Anything
// else (workload not found, no running pods, no claims, RBAC denial, an
// invalid object, a snapshot error, a timeout) fails the backup at once.
package snapshot
