package freeze

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/workload"
)

// backupPolicy is a BackupPolicy in shop selecting app=<app>, keeping keep.
func backupPolicy(name, app string, keep int) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "freezeframe.io/v1alpha1", "kind": "BackupPolicy",
		"metadata": map[string]any{"name": name, "namespace": "shop"},
		"spec": map[string]any{
			"schedule":        "@daily",
			"selection":       map[string]any{"labelSelector": map[string]any{"matchLabels": map[string]any{"app": app}}},
			"snapshotsToKeep": int64(keep),
		},
	}}
}

// A request's snapshotsToKeep deletes older backups, so the hooker applies
// it only when the scheduler sent it for a BackupPolicy that exists,
// selects the workload and says the same number. Otherwise the Quiesced
// (which the snapshotter's retention follows) carries the workload's
// annotation or nothing, and says why the request's number was ignored.
func TestRetentionComesFromPoliciesNotFromTheBus(t *testing.T) {
	const cli = "snapshotsToKeep 1 from cli via /freezeframe/cli: retention is set by a BackupPolicy or the workload's freezeframe.io/snapshots-to-keep annotation"
	tests := []struct {
		name        string
		source      string
		requestedBy string
		keep        int
		annotation  string // the workload's snapshots-to-keep
		wantKeep    int
		wantIgnored string // "" when honoured
	}{
		{"the scheduler for a policy that says the same", events.RoleScheduler.Source(), "policy/shop/nightly", 3, "", 3, ""},
		{"from the CLI", events.SourceCLI, "cli", 1, "", 0, cli},
		{"from the CLI, the workload's annotation applies", events.SourceCLI, "cli", 1, "5", 5, cli},
		{"from the Go client", events.SourceClient, "api", 1, "", 0, "snapshotsToKeep 1 from api via /freezeframe/client: retention is set by a BackupPolicy"},
		{"the scheduler passing on an ad-hoc request", events.RoleScheduler.Source(), "cli", 1, "", 0, "snapshotsToKeep 1 from cli via /freezeframe/scheduler: retention is set by"},
		{"naming a policy that says another number", events.RoleScheduler.Source(), "policy/shop/nightly", 1, "", 0, "BackupPolicy shop/nightly says snapshotsToKeep 3"},
		{"naming a policy that does not exist", events.RoleScheduler.Source(), "policy/shop/weekly", 1, "", 0, "BackupPolicy shop/weekly not found"},
		{"naming a policy that selects other workloads", events.RoleScheduler.Source(), "policy/shop/postgres", 3, "", 0, "BackupPolicy shop/postgres does not select deployment shop/redis"},
		{"naming a policy as the CLI", events.SourceCLI, "policy/shop/nightly", 3, "", 0, "snapshotsToKeep 3 from policy/shop/nightly via /freezeframe/cli: retention is set by"},
		{"no retention asked for", events.SourceCLI, "cli", 0, "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			annotations := map[string]string{AnnotationKanisterBlueprint: "redis-hooks"}
			if tt.annotation != "" {
				annotations[workload.AnnotationSnapshotsToKeep] = tt.annotation
			}
			f := newFixture(t, Config{}, redisBlueprint("KubeExec"), annotations, backupPolicy("nightly", "redis", 3), backupPolicy("postgres", "postgres", 3))
			ref := events.BackupRef{BackupID: "bk-keep", Workload: redisWorkload}
			if _, _, err := events.NewPublisher(f.js, tt.source).Publish(t.Context(), &events.BackupRequested{BackupRef: ref, RequestedBy: tt.requestedBy, SnapshotsToKeep: tt.keep}); err != nil {
				t.Fatal(err)
			}
			col := eventstest.Collect(t.Context(), t, f.client, events.Filter{BackupID: ref.BackupID})
			got := frozen(t, col)
			q, err := events.NewStreamHistory(f.js, "").Lookup(t.Context(), events.KindQuiesced, got)
			if err != nil {
				t.Fatal(err)
			}
			qp := q.Payload.(*events.Quiesced)
			if qp.SnapshotsToKeep != tt.wantKeep {
				t.Errorf("quiesced with snapshotsToKeep %d, want %d", qp.SnapshotsToKeep, tt.wantKeep)
			}
			switch {
			case tt.wantIgnored == "" && qp.RetentionIgnored != "":
				t.Errorf("retention ignored: %q, want it honoured", qp.RetentionIgnored)
			case !strings.Contains(qp.RetentionIgnored, tt.wantIgnored):
				t.Errorf("retentionIgnored %q, want it to say %q", qp.RetentionIgnored, tt.wantIgnored)
			}
			if tt.wantIgnored != "" && !strings.Contains(f.logText(), "ignoring the request's retention") {
				t.Errorf("no log says the request's retention was ignored")
			}
			f.snapshotted(t, ref)
			evs := col.Until(10*time.Second, events.IsTerminal)
			if r, ok := evs[len(evs)-1].Payload.(*events.Resumed); !ok || !r.Succeeded {
				t.Fatalf("events %v: the backup itself goes on", kinds(evs))
			}
		})
	}
}
