package freeze

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/services/hooker/podexec/podexectest"
)

func sessionBlueprint() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "freezeframe.io/v1alpha1", "kind": "Blueprint",
		"metadata": map[string]any{"name": "mariadb-hooks", "namespace": "kanister"},
		"actions": map[string]any{
			"backupPrehook": map[string]any{"phases": []any{map[string]any{
				"func": "KubeExecSession", "name": "lockTables",
				"args": map[string]any{
					"namespace": "{{ .Deployment.Namespace }}", "pod": "{{ index .Deployment.Pods 0 }}", "container": "redis",
					"command":      []any{"mariadb", "-N", "--unbuffered"},
					"stdin":        "FLUSH TABLES WITH READ LOCK TABLES;\n",
					"readyPattern": "FREEZEFRAME-LOCKED",
					"releaseInput": "UNLOCK TABLES;\n",
				},
			}}},
		},
	}}
}

// newDBClient is a client that answers the blueprint's lock as mariadb
// would.
func newDBClient() *podexectest.DBClient {
	return &podexectest.DBClient{Ready: []string{"FREEZEFRAME-LOCKED\n"}}
}

func runSessionBackup(t *testing.T, client *podexectest.DBClient) []events.Event {
	t.Helper()
	f := newFixture(t, Config{}, sessionBlueprint(), map[string]string{AnnotationBlueprint: "mariadb-hooks"})
	f.svc.exec = client
	_, col := f.request(t)
	col.Next(5 * time.Second) // requested
	q := col.Next(5 * time.Second)
	qp, ok := q.Payload.(*events.Quiesced)
	if !ok {
		t.Fatalf("want Quiesced, got %s %+v", q.Kind(), q.Payload)
	}
	if !f.svc.sessions.Has(backupKey(qp.BackupRef)) {
		t.Fatal("the lock session is not held after Quiesced")
	}
	if got := client.Lines(); len(got) != 1 || !strings.Contains(got[0], "FLUSH TABLES") {
		t.Fatalf("session input before resume %q", got)
	}
	if client.Crash != nil {
		close(client.Crash)
		lost := f.svc.sessions.Sessions(backupKey(qp.BackupRef))[0].Lost()
		select {
		case <-lost:
		case <-time.After(5 * time.Second):
			t.Fatal("the session's end was not noticed")
		}
	}
	if _, _, err := events.NewPublisher(f.js, events.RoleSnapshotter.Source()).Publish(t.Context(), &events.Snapshotted{BackupRef: qp.BackupRef, Mode: events.SnapshotModeVolume, Snapshots: []events.Snapshot{{Name: "s", Namespace: "shop", PVC: "data", CutAt: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	evs := col.Until(10*time.Second, events.IsTerminal)
	if f.svc.sessions.Has(backupKey(qp.BackupRef)) {
		t.Error("the lock session is still registered after the resume")
	}
	return evs
}

func TestSessionHeldUntilResume(t *testing.T) {
	client := newDBClient()
	evs := runSessionBackup(t, client)
	last := evs[len(evs)-1]
	if r, ok := last.Payload.(*events.Resumed); !ok || !r.Succeeded {
		t.Fatalf("want a successful resume, got %v %+v", kinds(evs), last.Payload)
	}
	got := client.Lines()
	if len(got) != 2 || got[1] != "UNLOCK TABLES;" {
		t.Fatalf("session input %q, want the lock then UNLOCK TABLES before EOF", got)
	}
}

func TestLostSessionFailsTheBackup(t *testing.T) {
	client := newDBClient()
	client.Crash = make(chan struct{})
	evs := runSessionBackup(t, client)
	got := kinds(evs)
	want := []events.Kind{events.KindSnapshotted, events.KindFailed, events.KindResumed}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("events after the snapshot %v, want %v", got, want)
	}
	if f := evs[1].Payload.(*events.BackupFailed); f.Step != events.StepFreeze || !strings.Contains(f.Reason, "lock session ended") {
		t.Errorf("failure %+v", f)
	}
	if r := evs[2].Payload.(*events.Resumed); r.Succeeded {
		t.Error("a backup whose lock was lost reported success")
	}
}
