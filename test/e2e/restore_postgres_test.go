package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/test/e2e/consistency"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// PostgreSQL under a writer that inserts rows (n, 'n') for n = 1, 2, ... one at a time,
// backed up with docs/blueprints.md's postgres-hooks (every table locked IN SHARE MODE
// by a transaction the session holds, a checkpoint inside the lock), then restored with
// `freezeframe restore --to-namespace --wait`: a fresh PostgreSQL on the restored claim
// holds exactly the rows 1..M, every row acknowledged before the freeze and none sent
// after it began (consistency.Check, as for Redis).
func TestRestorePostgresIntoAnotherNamespace(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	bp := docsBlueprint(t, "postgres-hooks")
	applyBlueprint(t, blueprintNamespace(t, bp), bp)
	db, err := c.StartPostgres(t.Context(), sandbox.DatabaseOptions{
		Namespace: "postgres-restore", Name: "ledger", StatefulSet: true,
		Annotations: map[string]string{"freezeframe.io/blueprint": "postgres-hooks"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := psql(t.Context(), db.Server, "CREATE SCHEMA app; CREATE TABLE app.t (n int PRIMARY KEY, v text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	up := startUp(t)
	client := connect(t, up)

	w := startSQLWriter(1, func(ctx context.Context, n int) error {
		_, err := psql(ctx, db.Server, fmt.Sprintf("INSERT INTO app.t VALUES (%d, '%d')", n, n))
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
	freeze := consistency.Freeze{From: q.QuiescedAt, Until: q.QuiescedAt.Add(r.FrozenFor.Std())}

	target := "postgres-restore-copy"
	restoreWithCLI(t, c, up, id, target, db.Volume.PVC)

	vol, err := c.ClaimVolume(t.Context(), target, db.Volume.PVC)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(vol.Path, sandbox.Postgres)
	// The snapshot's postmaster.pid names the original server's process, which still runs
	// on this machine: PostgreSQL would refuse the data directory as in use. On another
	// node (a pod of its own) that process does not exist and the file is ignored.
	if err := os.Remove(filepath.Join(dataDir, "postmaster.pid")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	fresh, err := c.RunServer(t.Context(), sandbox.Postgres, dataDir, db.Password)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fresh.Stop)
	got, err := psql(t.Context(), fresh, "SELECT n, v FROM app.t ORDER BY n")
	if err != nil {
		t.Fatal(err)
	}
	present := map[int]string{}
	for _, line := range strings.Split(got, "\n") {
		if line == "" {
			continue
		}
		ns, v, _ := strings.Cut(line, "|")
		n, err := strconv.Atoi(ns)
		if err != nil {
			t.Fatalf("row %q: %v", line, err)
		}
		present[n] = v
	}
	verdict := consistency.Check(writes, present, freeze)
	t.Logf("restored database, frozen %s..%s:\n%s", freeze.From.Format("15:04:05.000"), freeze.Until.Format("15:04:05.000"), verdict.Summary())
	if !verdict.Consistent {
		t.Fatalf("the restored database is not the writer's state at the freeze")
	}
}

// sqlWriter inserts (n, 'n') into app.t for n = 1, 2, ..., each INSERT by its own psql
// once the previous one was acknowledged, recording when each was sent and acknowledged.
type sqlWriter struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	writes []consistency.Write
	err    error
}

// startSQLWriter calls insert for n = first, first+1, ..., each once the
// previous one returned, until stop or an error.
func startSQLWriter(first int, insert func(ctx context.Context, n int) error) *sqlWriter {
	ctx, cancel := context.WithCancel(context.Background())
	w := &sqlWriter{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for n := first; ctx.Err() == nil; n++ {
			wr := consistency.Write{N: n, Issued: time.Now()}
			err := insert(ctx, n)
			if err == nil {
				wr.Acked = time.Now()
			}
			w.mu.Lock()
			w.writes = append(w.writes, wr)
			if err != nil && ctx.Err() == nil {
				w.err = err // cut short by stop, the last write's outcome is unknown: not an error
			}
			w.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return w
}

func (w *sqlWriter) acked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, wr := range w.writes {
		if !wr.Acked.IsZero() {
			n++
		}
	}
	return n
}

// waitMoreAcked waits until k more writes are acknowledged than now.
func (w *sqlWriter) waitMoreAcked(t *testing.T, k int) {
	t.Helper()
	want := w.acked() + k
	waitFor(t, 30*time.Second, fmt.Sprintf("%d more acknowledged writes", k), func() (bool, error) {
		return w.acked() >= want, w.error()
	})
}

func (w *sqlWriter) error() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *sqlWriter) stop() ([]consistency.Write, error) {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]consistency.Write(nil), w.writes...), w.err
}

// psql runs a SQL script with psql on the host, against s; rows come back one a line,
// columns separated by |.
func psql(ctx context.Context, s *sandbox.Server, sql string) (string, error) {
	return runSQLClient(ctx, s, sql, "psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c")
}

// docsBlueprint returns the example blueprint of docs/blueprints.md named name, as it is
// written there: what users copy is what the test runs.
func docsBlueprint(t *testing.T, name string) string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/blueprints.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range strings.Split(string(doc), "```yaml\n")[1:] {
		b = b[:strings.Index(b, "```")]
		if strings.Contains(b, "kind: Blueprint") && strings.Contains(b, "{name: "+name+",") {
			return b
		}
	}
	t.Fatalf("no blueprint %s in docs/blueprints.md", name)
	return ""
}

// blueprintNamespace returns the namespace in a blueprint's `metadata: {name: ..., namespace: ...}`.
func blueprintNamespace(t *testing.T, manifest string) string {
	t.Helper()
	_, rest, ok := strings.Cut(manifest, "namespace: ")
	if !ok {
		t.Fatalf("no namespace in blueprint:\n%s", manifest)
	}
	return strings.TrimSpace(rest[:strings.IndexAny(rest, "}\n")])
}
