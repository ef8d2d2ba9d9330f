// Package snapshot is the snapshotter service: on Quiesced it snapshots
// every PersistentVolumeClaim the workload's running pods mount (the list
// the hooker put in Quiesced) and publishes Snapshotted as soon as every
// snapshot is cut, or BackupFailed (step "snapshot", ResumePending) when it
// cannot be. The application is frozen for the whole time this part works,
// so every path ends in one of those two events and nothing waits that
// need not. Then, with nothing frozen, it follows the snapshots until they
// are ready to restore, publishes SnapshotReady and applies retention.
//
// # Volumes or a group
//
// Several claims on one CSI driver are cut as one VolumeGroupSnapshot (every
// volume at the same instant) when Config.GroupSnapshots is on, the cluster
// serves groupsnapshot.storage.k8s.io/v1, the driver has a group class and
// no VolumeSnapshotClass was asked for;
// the claims get the [LabelVolumeGroup] label the group selects them by.
// Otherwise each claim gets its own VolumeSnapshot, all created at once.
// The class comes from the Quiesced (the request, or the workload's
// annotation), else Config.DefaultSnapshotClass, else the class annotated
// default for the volume's driver. Claims, storage classes and snapshot
// classes are read from informer caches, so choosing costs no API call
// while the application is frozen.
//
// # Cut, not ready
//
// A snapshot is cut when the storage sets status.creationTime on its bound
// content (VolumeSnapshotContent, or VolumeGroupSnapshotContent), a hop
// before the snapshot controller copies it onto the snapshot; readyToUse can
// follow minutes later (an upload on cloud providers) and does not need the
// application frozen. Snapshotted is published at the cut, as KubeVirt does.
// While it waits for the cut the snapshotter rewrites the workload's
// progress key in the freeze bucket (events.SnapshotProgressKey) every
// Config.ProgressEvery, so the hooker's watchdog can tell a stalled
// snapshot from a slow one.
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
// backup already ended with success through another delivery.
//
// A record vouches for the freeze only until its ValidUntil (events.Freeze):
// half the stale period past its last write, never past the cap. Past it
// the holder may resume without writing resuming first (its bucket electing
// a leader must not keep the application frozen), so a record still held
// but past ValidUntil counts as not frozen: nothing is cut, and the backup
// fails at once, so that the application is resumed now rather than at its
// cap. See fence.go.
//
// # Idempotence
//
// Snapshot names are derived from the backup id and the claim
// ([SnapshotName], [GroupSnapshotName]), so a redelivered
// Quiesced finds the snapshots it created
// before (AlreadyExists) and waits on them instead of cutting new ones. The
// published events have deterministic ids, so the stream drops a second
// Snapshotted or BackupFailed of the same backup.
//
// # Watching
//
// Shared informers follow every VolumeSnapshot (and VolumeGroupSnapshot)
// labelled with [LabelBackupID] and their bound contents, cluster-wide, and
// wake the handlers waiting on them. No handler opens its own watch or
// polls: between freeze and resume the only Kubernetes calls are the
// creates, made concurrently (and, for a group, labelling claims not yet
// labelled). The calls the service account needs are listed, per service,
// in the Helm chart's RBAC table (deploy/helm/freezeframe/README.md).
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
