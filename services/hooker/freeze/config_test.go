package freeze

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/service"
)

// The blueprint namespaces, read from the environment as the hooker reads
// them: with nothing set, freezeframe's own namespace, then Kanister's and
// K10's, so that a blueprint pasted from their documentation is found.
func TestBlueprintNamespacesFromEnvironment(t *testing.T) {
	keys := []string{
		"HOOKER_BLUEPRINT_NAMESPACES", "BLUEPRINT_NAMESPACES",
		"HOOKER_BLUEPRINT_NAMESPACE", "BLUEPRINT_NAMESPACE",
		"HOOKER_POD_NAMESPACE", "POD_NAMESPACE",
	}
	dir := t.TempDir()
	saFile := filepath.Join(dir, "namespace")
	if err := os.WriteFile(saFile, []byte("backup-system\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noFile := filepath.Join(dir, "absent")
	tests := []struct {
		name    string
		env     map[string]string
		saFile  string
		want    []string
		warning string // a substring of the start-up warning; "" for none
		wantErr string
	}{
		{name: "nothing set, not in a pod", saFile: noFile,
			want: []string{"freezeframe", "kanister", "kasten-io"}},
		{name: "nothing set, in a pod", saFile: saFile,
			want: []string{"backup-system", "kanister", "kasten-io"}},
		{name: "POD_NAMESPACE", env: map[string]string{"POD_NAMESPACE": "ff"}, saFile: saFile,
			want: []string{"ff", "kanister", "kasten-io"}},
		{name: "HOOKER_POD_NAMESPACE wins", env: map[string]string{"POD_NAMESPACE": "ff", "HOOKER_POD_NAMESPACE": "ff-hooker"}, saFile: noFile,
			want: []string{"ff-hooker", "kanister", "kasten-io"}},
		{name: "running in kanister's namespace", env: map[string]string{"POD_NAMESPACE": "kanister"}, saFile: noFile,
			want: []string{"kanister", "kasten-io"}},
		{name: "list, trimmed, duplicates dropped", env: map[string]string{"HOOKER_BLUEPRINT_NAMESPACES": "team-a, kasten-io ,,team-a"}, saFile: saFile,
			want: []string{"team-a", "kasten-io"}},
		{name: "unprefixed list", env: map[string]string{"BLUEPRINT_NAMESPACES": "shared"}, saFile: saFile,
			want: []string{"shared"}},
		{name: "deprecated single namespace", env: map[string]string{"HOOKER_BLUEPRINT_NAMESPACE": "kanister"}, saFile: saFile,
			want: []string{"kanister"}, warning: "deprecated: set HOOKER_BLUEPRINT_NAMESPACES"},
		{name: "deprecated one ignored beside the list", env: map[string]string{"HOOKER_BLUEPRINT_NAMESPACE": "old", "HOOKER_BLUEPRINT_NAMESPACES": "new,kasten-io"}, saFile: saFile,
			want: []string{"new", "kasten-io"}, warning: "ignored"},
		{name: "not a namespace name", env: map[string]string{"HOOKER_BLUEPRINT_NAMESPACES": "ok,Team_A"}, saFile: saFile,
			wantErr: `"Team_A" is not a namespace name`},
		{name: "only separators", env: map[string]string{"HOOKER_BLUEPRINT_NAMESPACES": " , "}, saFile: saFile,
			wantErr: "names no namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range keys {
				t.Setenv(k, "") // restored after the test
				os.Unsetenv(k)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var cfg Config
			if _, err := service.Load("HOOKER", &cfg, nil, io.Discard); err != nil {
				t.Fatal(err)
			}
			got, err := cfg.blueprintNamespaces(tt.saFile)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("blueprint namespaces %q, want %q", got, tt.want)
			}
			w := cfg.blueprintNamespaceWarning()
			if (tt.warning == "") != (w == "") || !strings.Contains(w, tt.warning) {
				t.Errorf("warning %q, want one with %q", w, tt.warning)
			}
		})
	}
}

// --help says which key is deprecated, and what the default list is.
func TestBlueprintNamespacesHelp(t *testing.T) {
	var out strings.Builder
	if err := service.Usage("HOOKER", &Config{}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"HOOKER_BLUEPRINT_NAMESPACES", "kanister and kasten-io",
		"HOOKER_BLUEPRINT_NAMESPACE ", "deprecated, use BLUEPRINT_NAMESPACES",
		"HOOKER_POD_NAMESPACE",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not say %q:\n%s", want, out.String())
		}
	}
}

// The confinement settings, read from the environment: off and empty by
// default; a malformed allow-list stops the hooker at start, naming the key.
func TestConfinementFromEnvironment(t *testing.T) {
	for _, k := range []string{"HOOKER_EXEC_ALLOW", "EXEC_ALLOW", "HOOKER_NAMESPACED_BLUEPRINTS", "NAMESPACED_BLUEPRINTS"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	var cfg Config
	if _, err := service.Load("HOOKER", &cfg, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	if cfg.NamespacedBlueprints || len(cfg.ExecAllow.Entries) != 0 {
		t.Fatalf("defaults: namespaced blueprints %v, allow-list %q", cfg.NamespacedBlueprints, cfg.ExecAllow)
	}

	t.Setenv("HOOKER_NAMESPACED_BLUEPRINTS", "true")
	t.Setenv("HOOKER_EXEC_ALLOW", "db-tools:app=backup-agent;ops:team in (dba,sre)")
	cfg = Config{}
	if _, err := service.Load("HOOKER", &cfg, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !cfg.NamespacedBlueprints || cfg.ExecAllow.String() != "db-tools:app=backup-agent;ops:team in (dba,sre)" {
		t.Fatalf("read namespaced blueprints %v, allow-list %q", cfg.NamespacedBlueprints, cfg.ExecAllow)
	}

	t.Setenv("HOOKER_EXEC_ALLOW", "db-tools")
	if _, err := service.Load("HOOKER", &Config{}, nil, io.Discard); err == nil || !strings.Contains(err.Error(), "HOOKER_EXEC_ALLOW") {
		t.Fatalf("malformed allow-list: %v, want an error naming HOOKER_EXEC_ALLOW", err)
	}
}

func TestDeadMansSwitchWarning(t *testing.T) {
	for _, tc := range []struct {
		stale, renew time.Duration
		warn         bool
	}{
		{10 * time.Second, time.Second, false}, // the defaults
		{3 * time.Second, time.Second, false},
		{2500 * time.Millisecond, time.Second, true},
		{1500 * time.Millisecond, 250 * time.Millisecond, false}, // make chaos
		{1500 * time.Millisecond, 500 * time.Millisecond, true},
	} {
		w := Config{LeaseStaleAfter: tc.stale, LeaseRenewEvery: tc.renew}.deadMansSwitchWarning()
		if got := w != ""; got != tc.warn {
			t.Errorf("stale %s, renew %s: warning %q, want one: %v", tc.stale, tc.renew, w, tc.warn)
		}
	}
}
