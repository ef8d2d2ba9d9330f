package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// sqlWrite is one INSERT of the writer: sent, and acknowledged (zero if never).
type sqlWrite struct {
	n             int
	issued, acked time.Time
}

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

	ctx, stop := context.WithCancel(t.Context())
	var (
		mu     sync.Mutex
		writes []sqlWrite
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		for n := 4; ctx.Err() == nil; n++ {
			w := sqlWrite{n: n, issued: time.Now()}
			_, err := mariadb(ctx, db.Server, fmt.Sprintf("INSERT INTO app.t VALUES (%d, 'writer')", n))
			if err == nil {
				w.acked = time.Now()
			}
			mu.Lock()
			writes = append(writes, w)
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	waitFor(t, 30*time.Second, "the writer's first 20 rows", func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(writes) >= 20, nil
	})

	id := requestBackup(t, up, client, db.Namespace, events.KindStatefulSet, db.Workload)
	evs := followBackupReady(t, client, id).wait(t, 2*time.Minute)
	time.Sleep(200 * time.Millisecond) // a few writes after the resume: not in the backup either
	stop()
	<-done
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
		case !w.acked.IsZero() && w.acked.Before(frozenFrom) && !rows[w.n]:
			t.Errorf("row %d acknowledged at %s, before the freeze (%s), is not in the restored database", w.n, w.acked.Format("15:04:05.000"), frozenFrom.Format("15:04:05.000"))
		case w.issued.After(frozenUntil) && rows[w.n]:
			t.Errorf("row %d sent at %s, after the freeze ended (%s), is in the restored database", w.n, w.issued.Format("15:04:05.000"), frozenUntil.Format("15:04:05.000"))
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
