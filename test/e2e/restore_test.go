package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// MariaDB under a writer that inserts rows 4, 5, ... one at a time, backed up with
// FLUSH TABLES WITH READ LOCK held by a session, then restored with `freezeframe restore
// --to-namespace --wait`: a fresh MariaDB on the restored claim holds exactly the rows
// 1..M, every row acknowledged before the freeze and none sent after it ended.
func TestRestoreMariaDBIntoAnotherNamespace(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	db := startMariaDB(t, "mariadb-restore")
	up := startUp(t)
	client := connect(t, up)

	// Rows 1..3 are the table's own; the writer goes on from 4.
	w := startSQLWriter(4, func(ctx context.Context, n int) error {
		_, err := mariadb(ctx, db.Server, fmt.Sprintf("INSERT INTO app.t VALUES (%d, 'writer')", n))
		return err
	})
	waitFor(t, 30*time.Second, "the writer's first 20 rows", func() (bool, error) {
		return w.acked() >= 20, w.error()
	})

	id := requestBackup(t, up, client, db.Namespace, events.KindStatefulSet, db.Workload)
	evs := followBackupReady(t, client, id).wait(t, 2*time.Minute)
	w.waitMoreAcked(t, 3) // a few writes after the resume: not in the backup either
	writes, err := w.stop()
	if err != nil {
		t.Fatalf("writer: %v", err)
	}
	t.Logf("backup %s:\n%s", id, harness.Timeline(evs))
	q, okQ := harness.Payload[events.Quiesced](evs)
	r, okR := harness.Payload[events.Resumed](evs)
	if !okQ || !okR || !r.Succeeded {
		t.Fatalf("backup did not succeed: %v", harness.Kinds(evs))
	}
	frozenFrom, frozenUntil := q.QuiescedAt, q.QuiescedAt.Add(r.FrozenFor.Std())

	target := "mariadb-restore-copy"
	restoreWithCLI(t, c, up, id, target, db.Volume.PVC)

	vol, err := c.ClaimVolume(t.Context(), target, db.Volume.PVC)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := c.RunServer(t.Context(), sandbox.MariaDB, filepath.Join(vol.Path, sandbox.MariaDB), db.Password)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fresh.Stop)
	got, err := mariadb(t.Context(), fresh, "SELECT GROUP_CONCAT(n ORDER BY n) FROM app.t")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[int]bool{}
	max := 0
	for _, f := range strings.Split(got, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("rows %q: %v", got, err)
		}
		rows[n] = true
		max = maxInt(max, n)
	}
	for n := 1; n <= max; n++ {
		if !rows[n] {
			t.Errorf("row %d missing below the highest restored row %d: not a point in time", n, max)
		}
	}
	for _, w := range writes {
		switch {
		case !w.Acked.IsZero() && w.Acked.Before(frozenFrom) && !rows[w.N]:
			t.Errorf("row %d acknowledged at %s, before the freeze (%s), is not in the restored database", w.N, w.Acked.Format("15:04:05.000"), frozenFrom.Format("15:04:05.000"))
		case w.Issued.After(frozenUntil) && rows[w.N]:
			t.Errorf("row %d sent at %s, after the freeze ended (%s), is in the restored database", w.N, w.Issued.Format("15:04:05.000"), frozenUntil.Format("15:04:05.000"))
		}
	}
	t.Logf("restored database: rows 1..%d of %d written; frozen %s..%s", max, len(writes)+3, frozenFrom.Format("15:04:05.000"), frozenUntil.Format("15:04:05.000"))
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}
