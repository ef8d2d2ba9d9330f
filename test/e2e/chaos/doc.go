// Package chaos is a crash matrix that runs the real processes: a standalone
// nats-server with JetStream, and the scheduler, hooker, snapshotter and
// notifier binaries as separate processes (each its own process group, killed
// with the test binary), against the local Kubernetes sandbox with a real Redis
// under a writer.
//
// Each row of the matrix starts a fresh NATS and four fresh services, requests
// one backup, and kills one service with SIGKILL at one step of it (request
// received, mid pre-hook, after Quiesced, mid cut, after Snapshotted, mid
// post-hook, after Resumed), restarting it or not. Steps are seen on the event
// stream (a raw subscription on freezeframe.backup.>), in marker files the
// blueprint's hooks write before they sleep, and in the API proxy that holds
// the snapshot create. Scenario rows redeliver a finished backup's events,
// SIGSTOP a hooker replica past its lease, and hold the cut past the freeze
// cap.
//
// The full matrix (TestChaosMatrix) is built only with -tags chaos: make
// chaos runs it, CHAOS_ROWS selecting rows. make test runs TestChaosFast, one
// SIGKILL per service. docs/reliability.md has the last full run.
//
// # Invariants
//
// Every row checks, whatever happened: the backup reaches a terminal event; the
// application is writable within its cap, as the writer measures it (the
// longest gap between two acknowledged writes); the workload is never frozen
// twice; no VolumeSnapshot cut outside a freeze survives, and none is doubled;
// the notifier's Slack gets exactly one message per backup.
//
// # NATS cluster rows
//
// Rows on a 3-node JetStream cluster (stream and buckets at R3,
// STREAM_REPLICAS=3) kill a node, the stream's leader or another, mid-backup.
// The four services start at once on the fresh cluster, as a Helm install
// does (that made all four exit with "ensure stream: context deadline
// exceeded" until the services learned to wait for a forming cluster).
package chaos
