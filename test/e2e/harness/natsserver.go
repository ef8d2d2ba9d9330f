package harness

import (
	"context"
	"io"
	"path/filepath"

	"github.com/freezeframe/freezeframe/test/sandbox/natsserver"
)

// NATSServerVersion is the nats-server version pkg/events is built against
// (its go.mod), so the standalone server is the one the services were tested
// with embedded.
func NATSServerVersion() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return natsserver.VersionIn(filepath.Join(root, "pkg", "events", "go.mod"))
}

// EnsureNATSServer builds nats-server at version from the Go module proxy
// once and returns its path (see natsserver.Ensure).
func EnsureNATSServer(ctx context.Context, version string, progress io.Writer) (string, error) {
	return natsserver.Ensure(ctx, version, progress)
}
