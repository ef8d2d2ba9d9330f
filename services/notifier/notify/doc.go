// Package notify tells people how each backup ended.
//
// The notifier reads the backup event stream through the durable consumer
// [Durable] and hands every terminal event (see [events.IsTerminal]) to a
// [Notifier]: a Resumed, or a BackupFailed after which nothing needs
// resuming. A BackupFailed with ResumePending is not the end: the Resumed
// that follows it is, and that is the one notified. A BackupFailed with step
// ready, after a successful resume, is notified too.
//
// The consumer also reads SnapshotReady, only to count backups in the
// metric freezeframe_backups_total: a success once the backup is both
// resumed and ready to restore, a failure at its terminal event, each at its
// first delivery.
//
// [LogNotifier] writes one structured log record per backup. Other
// destinations implement [Notifier] and receive the same events; [Outcome]
// is the summary they format.
//
// # Delivery
//
// Notify runs at least once per terminal event: an error from it is retried
// with backoff, and an event being notified when a replica dies is
// redelivered to another. A destination that must not repeat itself
// deduplicates by the CloudEvent id, which is unique per event.
package notify
