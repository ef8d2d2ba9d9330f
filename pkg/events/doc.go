// Package events is freezeframe's contract: the CloudEvents that the services
// exchange, how they travel over NATS JetStream, and a small client for
// programs outside this repository.
//
// # Events
//
// Every event is a CloudEvents 1.0 event with a typed, versioned JSON payload.
// All events of one backup carry the same backup id (extension attribute
// "backupid") and the cluster (extension "cluster"); the payload names the
// workload. The types, in pipeline order:
//
//	io.freezeframe.backup.requested.v1        BackupRequested   a backup is asked for
//	io.freezeframe.backup.quiesced.v1         Quiesced          pre-hook done: the application is frozen
//	io.freezeframe.backup.snapshotted.v1      Snapshotted       every volume snapshot is cut
//	io.freezeframe.backup.resumed.v1          Resumed           post-hook done: the application runs again
//	io.freezeframe.backup.snapshot-ready.v1   SnapshotReady     every snapshot is ready to restore; retention applied
//	io.freezeframe.backup.failed.v1           BackupFailed      a step failed (step and reason)
//	io.freezeframe.backup.unlock-requested.v1 UnlockRequested   a freeze must end now (watchdog, operator)
//
// A backup's freeze ends with Resumed, or with a BackupFailed whose
// ResumePending is false (nothing is left to resume); see [IsTerminal]. A
// successful backup is complete once both its Resumed and its SnapshotReady
// are in, in either order, and a BackupFailed with step ready after the
// resume fails it; see [Completion] and [Client.WaitReady].
//
// # Subjects
//
// Events are published on
//
//	freezeframe.backup.<event>.<cluster>.<namespace>.<kind>.<name>.<backupid>
//
// where <event> is requested, quiesced, snapshotted, resumed,
// snapshot-ready, failed or unlock-requested, <kind> is the lower-case workload kind (deployment,
// statefulset), and dots inside a name are written as underscores (Kubernetes
// names never contain underscores, so the mapping is reversible). NATS
// wildcards select: "freezeframe.backup.failed.>" every failure,
// "freezeframe.backup.*.prod.shop.>" everything in namespace shop of cluster
// prod, "freezeframe.backup.*.*.*.*.*.<id>" one backup. [ParseSubject] reads
// a subject back.
//
// # Transport
//
// One JetStream stream with Limits retention holds every backup event
// ([EnsureStream]); each service reads it through its own durable pull
// consumer with explicit acks ([Consumer]). The stream is created bounded
// (30 days, [DefaultStreamMaxBytes] 1 GiB, [DefaultStreamMaxMsgs] 1,000,000
// events, oldest discarded first); a stream that exists keeps the limits an
// operator gave it, and the set-up only adds the subjects and the
// duplicates window freezeframe needs. Events travel in binary content
// mode: each attribute is a "ce-" header and the payload is the data. The
// event id is also the Nats-Msg-Id, so a republished event (a retried
// handler) is dropped by the stream as a duplicate. W3C trace context
// travels in the "traceparent" and "tracestate" headers.
//
// # Set-up and permissions
//
// The stream, the durables the services share ([Durables]) and the
// key-value buckets are created by one step with admin rights, [Setup]
// (`freezeframe setup`, `freezeframe up`, the chart's install job); the
// services bind to them ([BindStream], [BindKeyValue], [NewConsumer]) and
// wait, saying so, while they are missing ([ErrNotSetUp]). [Permissions]
// derives each [Role]'s NATS grants from the access table (the event kinds
// it emits) and the JetStream API subjects its work needs, so that a
// service needs no right to create, change or delete any of them.
//
// # Settlement
//
// A [Handler] returns nil (ack), a [Permanent] error (terminated with a
// reason: the input can never succeed), or any other error (redelivered with
// backoff). Messages that are not valid events are terminated with the
// reason and logged before a handler sees them, and never stop the consumer:
// larger than [ConsumerConfig].MaxEventSize ([DefaultMaxEventSize], 64 KiB,
// which publishers refuse to exceed too: [ErrTooLarge]), undecodable, an
// unknown type or a version this build does not read ([ErrUnknownVersion]),
// not matching their subject ([DecodeMessage], [ErrSubjectMismatch]): a
// consumer selects events by subject, so the type must be of the subject's
// kind and the payload's workload and backup id those of the subject; or
// from a source not allowed to emit their kind ([CheckSource],
// [ErrForbiddenSource], the table in access.go): the bus is not the only
// authority. While a handler runs, the
// consumer sends in-progress heartbeats so that a long hook or snapshot is
// not redelivered to another replica.
//
// # The freeze record
//
// Where a backup's freeze is lives in two JetStream key-value buckets,
// defined in freezes.go and written by the hooker: while the freeze is live,
// the workload's key in [FreezesBucket] holds a [Freeze] in state freezing,
// frozen or resuming, whose Epoch is the freeze's fencing token and whose
// ValidUntil says how long the record vouches for the freeze; once it
// ended, the backup's key in [BackupsBucket] holds a [FreezeEnd] (succeeded
// or not, why, how long frozen), written before the live key is deleted.
// [FreezeBook] reads them for the other services: the snapshotter cuts only
// while [FreezeBook.CheckFrozen] says frozen at the Quiesced's epoch and
// before ValidUntil, and retention counts only backups whose end says
// succeeded.
//
// # The catalog
//
// [Client.Backups] lists every backup of the selected workloads
// ([Catalog]), joining the events, the freeze ends ([ListFreezeEnds]) and
// the snapshots a [SnapshotLister] reads from the cluster: the end decides
// whether a backup succeeded, the cluster whether its snapshots are still
// there and ready. Each backup's retention plan comes from [Retain], the
// rule the snapshotter applies when a backup becomes ready.
package events
