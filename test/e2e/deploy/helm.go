package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Chart paths, relative to the repository root.
const (
	ChartDir     = "deploy/helm/freezeframe"
	BuildHelm    = "deploy/helm/build-helm.sh"
	CRDDir       = "deploy/crds"
	NATSModule   = "github.com/nats-io/k8s"
	natsInModule = "helm/charts/nats"
)

// NATSModuleVersion is the version of NATSModule whose helm/charts/nats satisfies the
// chart's dependency range.
const NATSModuleVersion = "v1.2.8"

// EnsureHelm builds helm once (cached outside the repository, keyed by version) and
// returns its path. Build progress goes to progress.
func EnsureHelm(ctx context.Context, root string, progress io.Writer) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, BuildHelm))
	cmd.Dir = root
	cmd.Stderr = progress
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("build helm: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	bin := lines[len(lines)-1]
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("build helm: %w", err)
	}
	return bin, nil
}

// NATSSource says where PrepareChart found the NATS chart.
type NATSSource string

// Where the NATS dependency came from.
const (
	NATSFromEnv      NATSSource = "FREEZEFRAME_NATS_CHART"
	NATSFromProxy    NATSSource = "module proxy"
	NATSFromStandIn  NATSSource = "stand-in"
	natsStandInChart            = "apiVersion: v2\nname: nats\nversion: 1.2.8\ndescription: stand-in for the NATS chart, which could not be fetched (renders nothing)\n"
)

// PrepareChart copies the chart into dir and fills its charts/ directory with the NATS
// dependency (see the package documentation). It returns the copy's path, the source of
// the dependency and, for a stand-in, why the upstream chart could not be had.
func PrepareChart(ctx context.Context, root, dir string) (chart string, src NATSSource, why string, err error) {
	chart = filepath.Join(dir, "freezeframe")
	if out, err := exec.CommandContext(ctx, "cp", "-r", filepath.Join(root, ChartDir), chart).CombinedOutput(); err != nil {
		return "", "", "", fmt.Errorf("copy chart: %w: %s", err, out)
	}
	deps := filepath.Join(chart, "charts")
	if err := os.MkdirAll(deps, 0o755); err != nil {
		return "", "", "", err
	}
	copyDep := func(from string) error {
		if out, err := exec.CommandContext(ctx, "cp", "-r", from, filepath.Join(deps, "nats")).CombinedOutput(); err != nil {
			return fmt.Errorf("copy nats chart: %w: %s", err, out)
		}
		// The module cache is read-only; helm does not write, but tidy up permissions.
		return exec.CommandContext(ctx, "chmod", "-R", "u+w", filepath.Join(deps, "nats")).Run()
	}
	if d := os.Getenv("FREEZEFRAME_NATS_CHART"); d != "" {
		return chart, NATSFromEnv, "", copyDep(d)
	}
	modDir, perr := downloadModule(ctx, NATSModule, NATSModuleVersion)
	if perr == nil {
		if _, serr := os.Stat(filepath.Join(modDir, natsInModule, "Chart.yaml")); serr == nil {
			return chart, NATSFromProxy, "", copyDep(filepath.Join(modDir, natsInModule))
		} else {
			perr = serr
		}
	}
	if err := os.MkdirAll(filepath.Join(deps, "nats"), 0o755); err != nil {
		return "", "", "", err
	}
	if err := os.WriteFile(filepath.Join(deps, "nats", "Chart.yaml"), []byte(natsStandInChart), 0o644); err != nil {
		return "", "", "", err
	}
	return chart, NATSFromStandIn, perr.Error(), nil
}

// downloadModule fetches module@version through the Go module proxy and returns its
// directory in the module cache.
func downloadModule(ctx context.Context, module, version string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module+"@"+version)
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	cmd.Dir = os.TempDir()
	out, _ := cmd.Output() // on failure -json still prints the error
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w: %s", module, version, err, out)
	}
	if info.Error != "" {
		return "", fmt.Errorf("go mod download %s@%s: %s", module, version, firstLine(info.Error))
	}
	return info.Dir, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// Helm runs helm commands.
type Helm struct {
	Bin string
	// KubeVersion is passed to `helm template` (the sandbox's version).
	KubeVersion string
}

// Run runs helm with args and returns its stdout; stderr is part of the error.
func (h Helm) Run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, h.Bin, args...)
	// No user's helm configuration or repositories: everything is local.
	tmp := os.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(tmp, "ff-helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(tmp, "ff-helm-config"), "HELM_DATA_HOME="+filepath.Join(tmp, "ff-helm-data"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("helm %s: %w: %s%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()), strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Template renders chart as release in namespace with the given values files and --set
// arguments, CRDs included, and returns the objects.
func (h Helm) Template(ctx context.Context, chart, release, namespace string, valuesFiles []string, set ...string) ([]*unstructured.Unstructured, error) {
	args := []string{"template", release, chart, "--namespace", namespace, "--include-crds"}
	if h.KubeVersion != "" {
		args = append(args, "--kube-version", h.KubeVersion)
	}
	for _, f := range valuesFiles {
		args = append(args, "-f", f)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := h.Run(ctx, args...)
	if err != nil {
		return nil, err
	}
	return Decode(out)
}

// Decode splits a multi-document YAML stream into objects, skipping empty documents.
func Decode(manifests []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifests)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read manifests: %w", err)
		}
		j, err := utilyaml.ToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("decode manifest: %w\n%s", err, doc)
		}
		if t := strings.TrimSpace(string(j)); t == "null" || t == "" || t == "{}" {
			continue
		}
		// Through the unstructured JSON scheme, so that integers stay int64.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("decode manifest: %w\n%s", err, doc)
		}
		objs = append(objs, u)
	}
}

// Encode writes objects as a multi-document YAML stream (JSON documents, which kubectl
// reads as YAML).
func Encode(objs []*unstructured.Unstructured) (string, error) {
	var b strings.Builder
	for _, o := range objs {
		j, err := o.MarshalJSON()
		if err != nil {
			return "", err
		}
		b.WriteString("---\n")
		b.Write(j)
		b.WriteString("\n")
	}
	return b.String(), nil
}

// Select returns the objects whose kind is one of kinds.
func Select(objs []*unstructured.Unstructured, kinds ...string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		for _, k := range kinds {
			if o.GetKind() == k {
				out = append(out, o)
				break
			}
		}
	}
	return out
}

// Without returns the objects whose kind is none of kinds.
func Without(objs []*unstructured.Unstructured, kinds ...string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
next:
	for _, o := range objs {
		for _, k := range kinds {
			if o.GetKind() == k {
				continue next
			}
		}
		out = append(out, o)
	}
	return out
}

// Find returns the object of kind and name, or nil.
func Find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}
