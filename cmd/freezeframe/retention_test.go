package main

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/workload"
)

// keep annotates the pipeline's redis Deployment with how many backups to
// keep: where retention is set when no BackupPolicy sets it.
func (p *pipeline) keep(t *testing.T, n string) {
	t.Helper()
	d, err := p.kube.AppsV1().Deployments("shop").Get(t.Context(), "redis", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Annotations[workload.AnnotationSnapshotsToKeep] = n
	if _, err := p.kube.AppsV1().Deployments("shop").Update(t.Context(), d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// `freezeframe backup --keep` is refused before anything is requested: the
// hooker would ignore a request's retention, and the error says where to
// set it instead.
func TestBackupKeepIsRefused(t *testing.T) {
	code, out, errOut := cli(t, "backup", "deploy/redis", "-n", "shop", "--keep", "1", "--nats", "nats://127.0.0.1:1")
	if code == 0 || out != "" {
		t.Fatalf("backup --keep exit %d, stdout %q: want a refusal", code, out)
	}
	for _, want := range []string{"--keep 1", "spec.snapshotsToKeep in a BackupPolicy", "freezeframe.io/snapshots-to-keep=1"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("refusal %q does not say %q", errOut, want)
		}
	}
}

// Requests that set snapshotsToKeep 1 without a BackupPolicy behind them,
// through the real services: published by a Go client, and forged as the
// scheduler for a policy that does not exist. Neither deletes a backup:
// every snapshot stays, and each backup's Quiesced says why its retention
// was ignored.
func TestRequestRetentionDeletesNothing(t *testing.T) {
	p := startPipeline(t, "")
	first, _ := p.backup(t)
	second, _ := p.backup(t)

	wait := func(id string) []events.Event {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		var seen []events.Event
		if _, err := p.client.WaitReady(ctx, id, func(ev events.Event) { seen = append(seen, ev) }); err != nil {
			t.Fatalf("backup %s did not end: %v (events %v)", id, err, kindsOf(seen))
		}
		return seen
	}
	redis := events.Workload{Cluster: "dev", Namespace: "shop", Kind: events.KindDeployment, Name: "redis"}
	viaClient, err := p.client.PublishBackupRequested(t.Context(), events.BackupRequested{BackupRef: events.BackupRef{Workload: redis}, SnapshotsToKeep: 1})
	if err != nil {
		t.Fatal(err)
	}
	forged := events.BackupRef{BackupID: events.NewBackupID(), Workload: redis}
	if _, _, err := events.NewPublisher(p.js, events.RoleScheduler.Source()).Publish(t.Context(),
		&events.BackupRequested{BackupRef: forged, RequestedBy: "policy/shop/hourly", SnapshotsToKeep: 1}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id, why string
	}{
		{viaClient.BackupID(), "snapshotsToKeep 1 from api via /freezeframe/client: retention is set by a BackupPolicy or the workload's freezeframe.io/snapshots-to-keep annotation"},
		{forged.BackupID, "snapshotsToKeep 1 from policy/shop/hourly via /freezeframe/scheduler: retention is set by a BackupPolicy or the workload's freezeframe.io/snapshots-to-keep annotation: BackupPolicy shop/hourly not found"},
	} {
		for _, ev := range wait(tc.id) {
			switch e := ev.Payload.(type) {
			case *events.Quiesced:
				if e.SnapshotsToKeep != 0 || e.RetentionIgnored != tc.why {
					t.Errorf("backup %s quiesced keeping %d, retentionIgnored %q; want 0 and %q", tc.id, e.SnapshotsToKeep, e.RetentionIgnored, tc.why)
				}
			case *events.SnapshotReady:
				if e.SnapshotsToKeep != 0 || len(e.Pruned) != 0 {
					t.Errorf("backup %s ready keeping %d, pruned %v: want nothing pruned", tc.id, e.SnapshotsToKeep, e.Pruned)
				}
			}
		}
	}
	for _, id := range []string{first, second, viaClient.BackupID(), forged.BackupID} {
		list, err := p.snaps.SnapshotV1().VolumeSnapshots("shop").List(t.Context(), metav1.ListOptions{LabelSelector: "freezeframe.io/backup-id=" + id})
		if err != nil || len(list.Items) != 1 {
			t.Errorf("snapshots of backup %s: %d (%v), want 1: retention deleted it", id, len(list.Items), err)
		}
	}
}
