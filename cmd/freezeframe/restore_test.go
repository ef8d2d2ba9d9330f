package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
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
		req, err := restoreRequest(group, "rs-1", "", "", false, false)
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
		req, err := restoreRequest(group, "rs-1", "copy", "", false, false)
		if err != nil || req.Volumes[0].Claim != "data-db-0" || req.Target() != "copy" {
			t.Fatalf("%+v, %v", req, err)
		}
	})
	t.Run("in place: the workload's own claims", func(t *testing.T) {
		req, err := restoreRequest(group, "rs-1", "", "", false, true)
		if err != nil || !req.InPlace || req.Target() != "shop" || req.Volumes[0].Claim != "data-db-0" || req.Volumes[1].Claim != "wal-db-0" {
			t.Fatalf("%+v, %v", req, err)
		}
	})
	failed := group
	failed.Outcome, failed.Step, failed.Reason = events.OutcomeFailed, events.StepFreeze, "the watchdog forced the resume"
	t.Run("not consistent: refused", func(t *testing.T) {
		_, err := restoreRequest(failed, "rs-1", "copy", "", false, false)
		if !errors.Is(err, errNotRestorable) || !strings.Contains(err.Error(), "watchdog") || !strings.Contains(err.Error(), "--allow-inconsistent") {
			t.Fatalf("err %v", err)
		}
		if _, err := restoreRequest(failed, "rs-1", "copy", "", true, false); err != nil {
			t.Fatalf("allowed: %v", err)
		}
	})
	t.Run("a snapshot missing: refused", func(t *testing.T) {
		b := group
		b.Snapshots = append([]events.CatalogSnapshot(nil), group.Snapshots...)
		b.Snapshots[2].State = events.SnapshotStateMissing
		if _, err := restoreRequest(b, "rs-1", "copy", "", false, false); !errors.Is(err, errNotRestorable) || !strings.Contains(err.Error(), "missing") {
			t.Fatalf("err %v", err)
		}
	})
}

// --in-place asks first: anything but y or yes (an empty stdin too) requests
// nothing; --yes requests a RestoreRequested with InPlace and the
// workload's own claim names.
func TestRestoreInPlaceAsksFirst(t *testing.T) {
	p := startPipeline(t, "")
	id, _ := p.backup(t)
	restore := func(stdin string, args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		args = append([]string{id, "--in-place", "--snapshots=false", "--nats", p.natsURL, "--cluster", "dev"}, args...)
		err := cmdRestore(t.Context(), args, strings.NewReader(stdin), &stdout, &stderr, nil)
		code := 0
		var ee exitError
		switch {
		case errors.As(err, &ee):
			code = ee.code
		case err != nil:
			code, stderr = 2, *bytes.NewBufferString(err.Error())
		}
		return code, stdout.String(), stderr.String()
	}
	requested := func() []*events.RestoreRequested {
		evs, err := p.client.List(t.Context(), events.Filter{BackupID: id, Kinds: []events.Kind{events.KindRestoreRequested}}, events.SubscribeOptions{FromStart: true})
		if err != nil {
			t.Fatal(err)
		}
		var out []*events.RestoreRequested
		for _, ev := range evs {
			out = append(out, ev.Payload.(*events.RestoreRequested))
		}
		return out
	}

	for _, answer := range []string{"", "n\n", "no\n", "redis\n"} {
		code, out, errOut := restore(answer)
		if code != 1 || !strings.Contains(out, "Restore backup "+id+" in place? deployment/redis -n shop") || !strings.Contains(out, "its claims redis-data will be deleted") || !strings.Contains(out, "not restored") {
			t.Fatalf("answer %q: exit %d\nstdout:\n%s\nstderr:\n%s", answer, code, out, errOut)
		}
	}
	if r := requested(); len(r) != 0 {
		t.Fatalf("%d restore(s) requested without a yes", len(r))
	}
	if code, _, errOut := restore("", "--to-namespace", "copy"); code != 2 || !strings.Contains(errOut, "neither --to-namespace nor --name-suffix") {
		t.Fatalf("--in-place --to-namespace: exit %d, %s", code, errOut)
	}

	code, out, errOut := restore("y\n")
	if code != 0 || !strings.Contains(out, "1 claim(s) in namespace shop") || !strings.Contains(out, "redis-data ← ") {
		t.Fatalf("answered y: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, out, _ = restore("", "--yes")
	if code != 0 || strings.Contains(out, "[y/N]") {
		t.Fatalf("--yes: exit %d, asked anyway:\n%s", code, out)
	}
	eventstest.Eventually(t, 10*time.Second, "two restores requested", func() bool { return len(requested()) >= 2 })
	r := requested()
	if len(r) != 2 {
		t.Fatalf("%d restores requested, want 2", len(r))
	}
	for _, req := range r {
		if !req.InPlace || req.TargetNamespace != "" || req.NameSuffix != "" || len(req.Volumes) != 1 || req.Volumes[0].Claim != "redis-data" {
			t.Errorf("request %+v", req)
		}
	}
}
