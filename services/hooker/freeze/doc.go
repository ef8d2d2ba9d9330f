// Package freeze is the hooker: it freezes an application by running its
// blueprint's backupPrehook in the application's pods, and resumes it by
// running backupPosthook.
//
// # Lifecycle
//
// A backup's freeze is one record (lease package, events.Freeze) moved
// requested → freezing → frozen → resuming → ended by compare-and-set
// transitions; lifecycle.go opens with the design and its invariants, and
// each transition has its file: freeze.go, resume.go, takeover.go,
// unlock.go. A backup is frozen at most once, a snapshot is cut only while
// the record says frozen at the Quiesced's epoch, and only the replica
// holding the record runs a post-hook.
//
// # When the post-hook runs
//
// Once any pre-hook phase has started, the post-hook runs: after
// Snapshotted; after a BackupFailed that says a resume is pending (pre-hook
// or snapshot failure); on an UnlockRequested (a watchdog, or an operator's
// freezeframe unlock). Those triggers are events, so they are visible and
// survive a crash of the replica that froze. The holder also has two
// backstops that need no event: its own timer, a moment past the freeze
// cap when no unlock came, and the loss of NATS for half the lease's stale
// period, when it could not hear one.
//
// # Admission
//
// Between the request's resolution and the freeze lease, a request waits
// for room on its storage (the snapshot class): admission.go, over the
// admission package's adaptive gate. The waiting request holds nothing and
// has frozen nothing; the op owns its slot, and ops.remove, where every op
// ends, gives it back.
//
// # Fast path
//
// Everything the post-hook needs (workload, blueprint, secrets) is read and
// the post-hook validated before the pre-hook runs, and kept in memory by
// the replica that froze, so that between freeze and resume there is no
// Kubernetes API call but the exec itself. A replica that did not freeze the
// backup rebuilds the plan from the API (slow path, only after a crash).
package freeze
