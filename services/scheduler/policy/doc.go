// Package policy runs BackupPolicy resources: at each tick of a policy's
// schedule it requests one backup of every Deployment and StatefulSet the
// policy selects, and keeps the policy's status (last and next run, last
// result) up to date.
//
// # No leader
//
// Every scheduler replica runs every policy. The backup id of a scheduled
// backup is derived from the policy, the workload and the tick ([BackupID]),
// and the event id from the backup id, so the requests of two replicas for
// the same tick are one event: JetStream drops the second copy within the
// stream's duplicate window (an hour by default).
//
// # Missed ticks
//
// The last tick run is recorded in the policy's status.lastScheduleTime.
// A replica that finds several ticks due since then (the schedulers were
// down) runs only the latest, once, and logs how many it skipped, as a
// CronJob does. A new policy starts from its creation time.
//
// # Time
//
// [Scheduler.Reconcile] takes the current time as an argument, and Run reads
// it from a [Clock], so tests drive ticks, time zones and downtime without
// waiting.
package policy
