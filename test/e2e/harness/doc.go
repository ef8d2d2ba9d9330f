// Package harness runs freezeframe the way a user does, against the local Kubernetes
// sandbox (package sandbox): it builds the freezeframe binary from cmd/freezeframe, runs
// `freezeframe up` (all four services) as a subprocess whose log goes to a file, connects
// the Go events client to its NATS, and can kill -9 and restart the process for crash
// tests.
//
// # NATS as in production
//
// A Bus is a standalone nats-server (EnsureNATSServer builds it) secured as the chart
// secures one: `freezeframe nats-auth` writes one nkey seed per role and the server's
// auth.conf, the server includes it, and `freezeframe setup` creates the stream, the
// shared durables and the buckets as admin. `freezeframe up` started with a Bus runs each
// service with its own seed (<SERVICE>_NATS_NKEY); the test's own connections and CLI
// invocations are the operator's, a redelivery is published as the hooker, consumer state
// is read as admin. Bus.Violations lists what the server refused anyone. Without a Bus,
// `up` starts an embedded NATS with no credentials (the demo).
//
// # Making the cut slow, or never happen
//
// The CSI driver of the sandbox cuts a snapshot within milliseconds. APIProxy sits between
// the snapshotter and the API server (SNAPSHOTTER_KUBECONFIG names it) and can hold the
// snapshotter's VolumeSnapshot creations: the application stays frozen for as long as a
// test needs to look at it, or until the watchdog unlocks it, exactly as with a snapshot
// API call that hangs. The hooker keeps talking to the API server directly.
package harness
