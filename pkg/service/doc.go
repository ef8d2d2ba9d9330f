// Package service is the start-up and shutdown every freezeframe service
// shares: configuration from the environment (with --help), JSON logs that
// carry the trace id, OpenTelemetry, the NATS connection and the backup event
// stream, signal handling and a bounded, ordered shutdown.
//
// A service's main is one call to Main; the all-in-one runner calls the
// services' Run functions itself with configurations it derives.
package service
