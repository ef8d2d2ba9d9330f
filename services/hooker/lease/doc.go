// Package lease keeps one freeze lease per workload in a JetStream key-value
// bucket, and runs the watchdog that asks for an unlock when a lease outlives
// its freeze cap or its holder stops renewing it.
//
// # Leases
//
// A hooker replica acquires a workload's lease just before the pre-hook
// ([Store.Acquire]) and, once the post-hook finished, records the freeze's
// end and releases it ([Hold.End], [Hold.Release]; [Store.TakeOver] and
// [Store.Release] from another replica). While the lease
// exists no other backup can freeze the workload: Acquire fails with a
// [*HeldError] that names the backup holding it, since when and until when.
// The key is the workload's [events.Workload.Key] (kind normalised, so
// "deploy/x" and "Deployment/x" share one lease); the value is the [Lease] as
// JSON, readable with `nats kv get freezeframe-freezes <key>`.
//
// Every write is a compare-and-set on the key's revision, so a holder notices
// when the lease was released or taken over behind its back ([ErrLost]). A
// write whose reply was lost (timeout) but which the server stored is
// recognised on the next write and adopted, not mistaken for a loss.
//
// # Renewal
//
// The holder rewrites RenewedAt every [Config.RenewEvery] ([Hold.Keep]).
// Renewal never moves the Deadline: the freeze cap counts from AcquiredAt and
// a redelivered request that re-acquires its own lease gets the original
// Deadline back. Keep gives up with [ErrStalled] when no renewal succeeded
// for half of [Config.StaleAfter]: a holder cut off from NATS cannot hear the
// watchdogs' UnlockRequested, so it resumes the application itself, and at
// half the period no watchdog may yet have taken the freeze over. Every
// write also sets ValidUntil, half the stale period past it and never past
// the Deadline: readers (the snapshotter) count the freeze only until then,
// so past it the holder may resume without writing first ([Hold.ValidUntil]).
//
// # States and ends
//
// A lease is a live freeze (events.Freeze): freezing, frozen, resuming, each
// change a compare-and-set ([Hold.SetState]) that refuses moves the state
// machine does not have. Its Epoch, the revision that created the key, is
// the freeze's fencing token. A freeze ends with [Hold.End]: its end
// (events.FreezeEnd) is recorded in the backups bucket, then the lease is
// deleted; [Store.Acquire] refuses a backup whose end is recorded
// ([ErrEnded]), so no backup is frozen twice.
//
// # No key TTL
//
// Leases never expire on their own. An expired key would take the backup id
// with it, and a watchdog restarted after the expiry could not tell which
// backup to unlock. Staleness is judged by the watchdogs instead, from the
// lease values they watch. The ends of freezes, in the backups bucket, do
// expire: after [Config.EndedTTL], as long as the event stream keeps the
// requests that could replay them ([EndedForever] for a stream without an
// age limit).
//
// # Watchdog
//
// [Watchdog] runs in every hooker replica. It follows the whole bucket with
// one watch (replaying every current lease on start, so leases that went
// stale while no hooker ran are reconciled) and judges, every Tick, from
// memory: a lease whose Deadline passed, whose revision has not changed for
// StaleAfter, or (with [WatchdogConfig].SnapshotStallAfter set) that is
// frozen while no snapshotter has reported progress on its snapshot for that
// long (the progress keys, events.SnapshotProgressKey, live in the same
// bucket), is reported to the onStale callback with its [Cause], at most
// once per RefireAfter per lease and replica, and again later while it stays
// stale.
//
// Staleness is measured on the watchdog's own monotonic clock, counting only
// time during which it can prove its view of the bucket is current: each
// watchdog writes a heartbeat into the bucket every Tick and sees it come
// back through its watch; since a watch delivers in stream order, an echoed
// heartbeat proves every renewal stored before it was seen. Time while the
// watchdog was disconnected, or while the bucket's stream had no leader, does
// not count, so a network blip or a leader election does not turn every
// healthy freeze into an unlock, and clock skew between replicas does not
// matter. A renewal counts from the first echo after it, so a lease is never
// called silent for longer than it was. A blind watchdog reports nothing
// (not even a passed Deadline), and replaces a watch that stays silent for
// StaleAfter: nats.go's watch does not always come back after a server
// restart. The price: after a restart a watchdog waits StaleAfter before it
// calls a silent lease stale (leases past their Deadline are reported at
// once).
//
// All watchdogs share one heartbeat key ("_watchdog") that is overwritten
// every Tick, so crashed replicas leave nothing behind.
package lease
