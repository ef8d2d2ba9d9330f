// Package harness runs freezeframe the way a user does, against the local Kubernetes
// sandbox (package sandbox): it builds the freezeframe binary from cmd/freezeframe, runs
// `freezeframe up` (all four services and an embedded NATS) as a subprocess whose log goes
// to a file, connects the Go events client to that NATS, and can kill -9 and restart the
// process for crash tests.
//
// # Making the cut slow, or never happen
//
// The CSI driver of the sandbox cuts a snapshot within milliseconds. APIProxy sits between
// the snapshotter and the API server (SNAPSHOTTER_KUBECONFIG names it) and can hold the
// snapshotter's VolumeSnapshot creations: the application stays frozen for as long as a
// test needs to look at it, or until the watchdog unlocks it, exactly as with a snapshot
// API call that hangs. The hooker keeps talking to the API server directly.
package harness
