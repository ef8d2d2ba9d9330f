package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

// backups runs `freezeframe backups` against the fake cluster snaps.
func backups(t *testing.T, snaps snapshotAPI, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := cmdBackups(t.Context(), args, &stdout, &stderr, func(string) (snapshotAPI, error) { return snaps, nil })
	if err != nil {
		t.Logf("stderr: %s", stderr.String())
	}
	return stdout.String(), err
}

func backupsJSON(t *testing.T, snaps snapshotAPI, args ...string) events.Catalog {
	t.Helper()
	out, err := backups(t, snaps, append(args, "-o", "json")...)
	if err != nil {
		t.Fatalf("backups -o json: %v", err)
	}
	var cat events.Catalog
	if err := json.Unmarshal([]byte(out), &cat); err != nil {
		t.Fatalf("backups -o json: %v\n%s", err, out)
	}
	return cat
}

// Real services against a fake cluster: three backups keeping two (the
// first pruned), a snapshot deleted by hand, a failed pre-hook.
func TestBackupsCatalogAgreesWithEventsEndsAndCluster(t *testing.T) {
	p := startPipeline(t, "")
	conn := []string{"--nats", p.natsURL, "--cluster", "dev"}

	if out, err := backups(t, p.snaps, conn...); err != nil || !strings.Contains(out, "no backups") {
		t.Fatalf("nothing backed up yet: %v\n%s", err, out)
	}
	p.keep(t, "2")
	var ids []string
	for range 3 {
		code, out, errOut := cli(t, append([]string{"backup", "deploy/redis", "-n", "shop", "--wait"}, conn...)...)
		if code != 0 {
			t.Fatalf("backup exit %d\n%s\n%s", code, out, errOut)
		}
		ids = append(ids, strings.Fields(out)[1])
	}
	// By hand: the second backup's snapshot goes.
	list, err := p.snaps.SnapshotV1().VolumeSnapshots("shop").List(t.Context(), metav1.ListOptions{LabelSelector: "freezeframe.io/backup-id=" + ids[1]})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("snapshots of %s: %v, %v", ids[1], list, err)
	}
	if err := p.snaps.SnapshotV1().VolumeSnapshots("shop").Delete(t.Context(), list.Items[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	p.exec.Fail("CLIENT PAUSE", 0)
	if code, out, _ := cli(t, append([]string{"backup", "deploy/redis", "-n", "shop", "--wait"}, conn...)...); code != 1 {
		t.Fatalf("failing backup exit %d\n%s", code, out)
	}
	failedID := ""
	eventstest.Eventually(t, 5*time.Second, "the failed backup in the catalog", func() bool {
		cat := backupsJSON(t, p.snaps, append(conn, "-n", "shop")...)
		if len(cat.Workloads) == 1 && len(cat.Workloads[0].Backups) == 4 {
			failedID = cat.Workloads[0].Backups[0].BackupID
		}
		return failedID != ""
	})

	cat := backupsJSON(t, p.snaps, append(conn, "--workload", "deployment/redis")...)
	if !cat.ClusterChecked || len(cat.Workloads) != 1 {
		t.Fatalf("catalog %+v", cat)
	}
	wb := cat.Workloads[0]
	if wb.Workload.Name != "redis" || wb.Workload.Namespace != "shop" || wb.SnapshotsToKeep != 2 || len(wb.Backups) != 4 {
		t.Fatalf("redis: %+v", wb)
	}
	type want struct {
		id      string
		outcome events.BackupOutcome
		state   events.SnapshotState // of its one snapshot; "" for none
		plan    events.RetentionPlan
	}
	for i, w := range []want{
		{failedID, events.OutcomeFailed, "", events.PlanGone},
		{ids[2], events.OutcomeConsistent, events.SnapshotStateReady, events.PlanKeep},
		{ids[1], events.OutcomeConsistent, events.SnapshotStateMissing, events.PlanGone},
		{ids[0], events.OutcomeConsistent, events.SnapshotStatePruned, events.PlanPruned},
	} {
		b := wb.Backups[i]
		state := events.SnapshotState("")
		if len(b.Snapshots) == 1 {
			state = b.Snapshots[0].State
		}
		if b.BackupID != w.id || b.Outcome != w.outcome || state != w.state || b.Retention != w.plan || (len(b.Snapshots) > 1) {
			t.Errorf("backup %d: %s %s %+v %s; want %s %s %s %s", i, b.BackupID, b.Outcome, b.Snapshots, b.Retention, w.id, w.outcome, w.state, w.plan)
		}
	}
	if b := wb.Backups[1]; !b.Restorable || b.FrozenFor <= 0 || b.RequestedBy != "cli" || b.Snapshots[0].PVC != "redis-data" || !strings.HasPrefix(b.Snapshots[0].Name, "ff-") {
		t.Errorf("newest good backup %+v", b)
	}
	if b := wb.Backups[2]; b.Restorable {
		t.Errorf("a backup whose snapshot was deleted by hand is restorable: %+v", b)
	}
	if b := wb.Backups[0]; b.Step != events.StepQuiesce || !strings.Contains(b.Reason, "status 7") || b.Restorable {
		t.Errorf("failed backup %+v", b)
	}

	out, err := backups(t, p.snaps, append(conn, "-n", "shop")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"shop/deployment/redis (keeps 2 complete backups)", "BACKUP", "RETENTION", ids[2], "consistent", " ready", "keep",
		"missing", "pruned", "failed", "quiesce failed:", "gone"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	t.Logf("freezeframe backups -n shop:\n%s", out)
	js, _ := backups(t, p.snaps, append(conn, "--workload", "deploy/redis", "-o", "json")...)
	t.Logf("freezeframe backups --workload deploy/redis -o json:\n%s", js)

	// Another namespace: nothing.
	if cat := backupsJSON(t, p.snaps, append(conn, "-n", "other")...); len(cat.Workloads) != 0 {
		t.Errorf("namespace other: %+v", cat.Workloads)
	}
	// The events alone: the snapshot deleted by hand looks ready.
	out, err = backups(t, nil, append(conn, "--snapshots=false")...)
	if err != nil || !strings.Contains(out, "not checked against the cluster") || strings.Contains(out, "missing") {
		t.Errorf("--snapshots=false: %v\n%s", err, out)
	}
}

// An operator's unlock, through the real hooker: the catalog says the
// backup failed at step freeze and who forced the resume.
func TestBackupsShowsAForcedUnlock(t *testing.T) {
	r := startFrozenRig(t)
	conn := []string{"--nats", r.natsURL, "--cluster", "dev"}
	req, err := r.client.PublishBackupRequested(t.Context(), events.BackupRequested{RequestedBy: "test",
		BackupRef: events.BackupRef{Workload: events.Workload{Cluster: "dev", Namespace: "shop", Kind: events.KindDeployment, Name: "redis"}}})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 10*time.Second, "the backup holds a frozen lease", func() bool {
		st := r.status(t)
		return len(st.Frozen) == 1 && st.Frozen[0].State == lease.StateFrozen
	})
	cat := backupsJSON(t, snapfake.NewSimpleClientset(), conn...)
	if b := cat.Workloads[0].Backups[0]; b.Outcome != events.OutcomeInFlight || b.Retention != events.PlanNotCounted {
		t.Errorf("frozen backup: %+v", b)
	}
	var stdout, stderr bytes.Buffer
	if err := cmdUnlock(t.Context(), append([]string{"deployment/redis", "-n", "shop", "--yes"}, conn...), strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatalf("unlock: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	cat = backupsJSON(t, snapfake.NewSimpleClientset(), conn...)
	b := cat.Workloads[0].Backups[0]
	if b.BackupID != req.BackupID() || b.Outcome != events.OutcomeFailed || b.Step != events.StepFreeze || b.Unlock == nil ||
		b.Unlock.By != osUser() || b.Unlock.Reason != events.ResumeOperator || b.FrozenFor <= 0 || b.Retention != events.PlanGone {
		t.Errorf("unlocked backup: %+v (unlock %+v)", b, b.Unlock)
	}
	out, _ := backups(t, snapfake.NewSimpleClientset(), conn...)
	if !strings.Contains(out, "failed (unlocked)") || !strings.Contains(out, "resume forced by "+osUser()+" (operator)") {
		t.Errorf("table:\n%s", out)
	}
	t.Logf("freezeframe backups after an operator's unlock:\n%s", out)
}

func TestBackupsUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"backups", "-o", "yaml"}, {"backups", "redis"}, {"backups", "--workload", "cronjob/x"}} {
		if code, _, _ := cli(t, args...); code == 0 {
			t.Errorf("freezeframe %v exited 0", args)
		}
	}
	// A cluster that cannot be reached is an error that says how to go without.
	var stdout, stderr bytes.Buffer
	err := cmdBackups(t.Context(), nil, &stdout, &stderr, func(string) (snapshotAPI, error) { return nil, errors.New("no kubeconfig") })
	if err == nil || !strings.Contains(err.Error(), "--snapshots=false") {
		t.Errorf("no cluster: %v", err)
	}
}
