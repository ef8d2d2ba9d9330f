// Package e2e holds freezeframe's end-to-end tests: the real `freezeframe up` binary
// against the local Kubernetes sandbox (test/sandbox) with real Redis and MariaDB servers
// behind its pods, one sandbox for the whole package. Packages harness (the freezeframe
// process, an API proxy that can hold the snapshotter's calls), consistency (numbered
// writes and the snapshot check) and demo (`make demo`) serve them.
package e2e
