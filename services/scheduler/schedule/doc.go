// Package schedule decides which backups start: it is the only place a
// BackupRequested enters the pipeline after its workload was checked.
//
// # Ad-hoc requests
//
// The scheduler answers NATS requests on [events.APISubject] for its cluster,
// in the queue group [QueueGroup] so that replicas share them. A request is a
// JSON [events.BackupRequested] whose backup id the client chose (see
// [events.Client.RequestBackup]). The scheduler checks that the request is
// valid, that the Deployment or StatefulSet exists and that a blueprint is
// bound to it (the request's Blueprint, else the annotation
// [AnnotationBlueprint], else [AnnotationKanisterBlueprint]), then publishes
// the BackupRequested and replies {"backupId": ...}.
//
// A request that can never succeed is refused: the reply carries an error,
// and a BackupFailed (step "request", nothing to resume) is published for
// the backup, so that whoever waits on the backup id sees it end. A request
// the scheduler cannot decide, because Kubernetes or JetStream is
// unreachable, gets an error reply and no event: it may succeed when the
// client retries.
//
// # Retries
//
// Every event the scheduler publishes has an id derived from the backup id
// (see [events.DefaultID]), so a client that retries after a lost reply, or
// two replicas that both saw a redelivered request, cannot start a second
// backup: the stream drops the copy within its duplicate window.
package schedule
