package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/freezeframe/freezeframe/pkg/events"
)

func TestRestoreRequestFromTheCatalog(t *testing.T) {
	w := events.Workload{Cluster: "dev", Namespace: "shop", Kind: events.KindStatefulSet, Name: "db"}
	group := events.CatalogBackup{BackupID: "bk-01a23b16-9e8f-758e-867a-3f8de8496e15", Workload: w, Outcome: events.OutcomeConsistent, Mode: events.SnapshotModeGroup,
		Snapshots: []events.CatalogSnapshot{
			{Kind: events.SnapshotKindGroup, Namespace: "shop", Name: "ffg-1", State: events.SnapshotStateReady},
			{Kind: events.SnapshotKindVolume, Namespace: "shop", Name: "snapshot-a", PVC: "data-db-0", State: events.SnapshotStateReady, RestoreSize: "1Gi"},
			{Kind: events.SnapshotKindVolume, Namespace: "shop", Name: "snapshot-b", PVC: "wal-db-0", State: events.SnapshotStateReady},
		}}
	t.Run("group, same namespace: every member, a default suffix", func(t *testing.T) {
		req, err := restoreRequest(group, "rs-1", "", "", false)
		if err != nil {
			t.Fatal(err)
		}
		if req.Group != "ffg-1" || req.TargetNamespace != "" || len(req.Volumes) != 2 {
			t.Fatalf("%+v", req)
		}
		if got := req.Volumes[0].Claim; got != "data-db-0-restore-e8496e15" {
			t.Errorf("claim %s, want data-db-0-restore-e8496e15 (the id's last eight letters and digits)", got)
		}
	})
	t.Run("another namespace keeps the names", func(t *testing.T) {
		req, err := restoreRequest(group, "rs-1", "copy", "", false)
		if err != nil || req.Volumes[0].Claim != "data-db-0" || req.Target() != "copy" {
			t.Fatalf("%+v, %v", req, err)
		}
	})
	failed := group
	failed.Outcome, failed.Step, failed.Reason = events.OutcomeFailed, events.StepFreeze, "the watchdog forced the resume"
	t.Run("not consistent: refused", func(t *testing.T) {
		_, err := restoreRequest(failed, "rs-1", "copy", "", false)
		if !errors.Is(err, errNotRestorable) || !strings.Contains(err.Error(), "watchdog") || !strings.Contains(err.Error(), "--allow-inconsistent") {
			t.Fatalf("err %v", err)
		}
		if _, err := restoreRequest(failed, "rs-1", "copy", "", true); err != nil {
			t.Fatalf("allowed: %v", err)
		}
	})
	t.Run("a snapshot missing: refused", func(t *testing.T) {
		b := group
		b.Snapshots = append([]events.CatalogSnapshot(nil), group.Snapshots...)
		b.Snapshots[2].State = events.SnapshotStateMissing
		if _, err := restoreRequest(b, "rs-1", "copy", "", false); !errors.Is(err, errNotRestorable) || !strings.Contains(err.Error(), "missing") {
			t.Fatalf("err %v", err)
		}
	})
}
