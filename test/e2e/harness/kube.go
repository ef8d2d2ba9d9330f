package harness

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/freezeframe/freezeframe/test/sandbox"
)

// InstallBlueprintCRD applies deploy/crds/ (the Blueprint CRD, as the README says to) and
// waits until the API server serves it.
func InstallBlueprintCRD(ctx context.Context, c *sandbox.Cluster) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	if _, err := c.Kubectl(ctx, "apply", "-f", filepath.Join(root, "deploy", "crds")); err != nil {
		return fmt.Errorf("install blueprint CRD: %w", err)
	}
	if _, err := c.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd/blueprints.freezeframe.io"); err != nil {
		return fmt.Errorf("install blueprint CRD: %w", err)
	}
	return nil
}

// Apply applies manifests with `kubectl apply -f -` and returns kubectl's output.
func Apply(ctx context.Context, c *sandbox.Cluster, manifests string) (string, error) {
	out, err := c.KubectlStdin(ctx, strings.NewReader(manifests), "apply", "-f", "-")
	if err != nil {
		return "", fmt.Errorf("apply: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
