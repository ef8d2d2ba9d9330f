// Package demo is `make demo`: it brings the sandbox up, deploys a Redis application
// with a Blueprint bound by annotation, runs `freezeframe up`, backs the application up
// with the real CLI while a writer keeps writing numbered keys, prints the timeline and
// the VolumeSnapshot, and proves the snapshot application-consistent by starting a fresh
// Redis on its copy. Command demo (cmd/demo) runs it; the e2e tests run it too.
package demo
