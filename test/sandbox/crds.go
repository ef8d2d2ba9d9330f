package sandbox

import (
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
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Versions of the modules whose manifests the sandbox reads from the module cache. They
// match go.mod (external-snapshotter client) and tools/kwok/go.mod.
const (
	snapshotterClientModule  = "github.com/kubernetes-csi/external-snapshotter/client/v8"
	snapshotterClientVersion = "v8.7.0"
	kwokModule               = "sigs.k8s.io/kwok"
	kwokVersion              = "v0.7.0"
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// moduleDir returns where module@version lies in the module cache, downloading it when
// missing (through the configured GOPROXY, like any build).
func moduleDir(ctx context.Context, module, version string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = os.TempDir() // outside any module or workspace
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locate module %s@%s: %w: %s", module, version, err, stderr.String())
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("locate module %s@%s: %w", module, version, err)
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("locate module %s@%s: %s", module, version, info.Error)
	}
	return info.Dir, nil
}

// installCRDs installs the VolumeSnapshot and VolumeGroupSnapshot CRDs (snapshot-controller
// v8.7 keeps failing until the group ones exist too) and kwok's Exec CRD.
func (c *Cluster) installCRDs(ctx context.Context) error {
	snapDir, err := moduleDir(ctx, snapshotterClientModule, snapshotterClientVersion)
	if err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(snapDir, "config", "crd", "*storage.k8s.io_*.yaml"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no CRDs under %s/config/crd", snapDir)
	}
	kwokDir, err := moduleDir(ctx, kwokModule, kwokVersion)
	if err != nil {
		return err
	}
	files = append(files, filepath.Join(kwokDir, "kustomize", "crd", "bases", "kwok.x-k8s.io_execs.yaml"))
	var names []string
	for _, f := range files {
		objs, err := readManifests(f)
		if err != nil {
			return err
		}
		for _, obj := range objs {
			if obj.GetKind() != "CustomResourceDefinition" {
				continue
			}
			_, err := c.Dynamic.Resource(crdResource).Create(ctx, obj, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create CRD %s: %w", obj.GetName(), err)
			}
			names = append(names, obj.GetName())
		}
	}
	for _, name := range names {
		err := waitFor(ctx, nil, 30*time.Second, "CRD "+name+" established", func(ctx context.Context) (bool, error) {
			obj, err := c.Dynamic.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
			for _, cond := range conds {
				m, _ := cond.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// readManifests decodes every object in a multi-document YAML file.
func readManifests(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		if len(m) == 0 || strings.TrimSpace(fmt.Sprint(m["kind"])) == "" {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}
