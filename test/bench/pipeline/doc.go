// Package pipeline runs the real scheduler, hooker and snapshotter in one
// process against an embedded JetStream and fake Kubernetes
// clientsets, as cmd/freezeframe's pipeline test wires them, for the
// benchmarks. The notifier is left out: it only reads terminal events, after
// the resume. Only exec into pods and the CSI snapshot controller are stood
// in for, both instant, and both stamp the moments the freeze overhead is
// computed from:
//
//   - Exec (podexectest.Recorder) sees both hook commands, so it records
//     when the pre-hook ended and when the post-hook started, per workload;
//   - Cuts is the snapshot controller (snapshottest.Controller): it cuts
//     each VolumeSnapshot right after it is created, and records when the
//     create call arrived and when the cut status was written, per workload.
//
// Freeze overhead is then (post-hook start - pre-hook end) - (cut - create):
// the time the application stays frozen beyond what the storage itself
// took. Each workload lives in its own namespace (bench-0000, ...), one
// Deployment "db" with one pod "db-0" that mounts one PVC "data".
package pipeline
