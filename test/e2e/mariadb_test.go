package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// startMariaDB starts a MariaDB StatefulSet bound to the README's FTWRL blueprint, with
// a table app.t holding rows 1..3.
func startMariaDB(t *testing.T, ns string) *sandbox.Database {
	t.Helper()
	c := sandbox.Shared(t)
	db, err := c.StartMariaDB(t.Context(), sandbox.DatabaseOptions{
		Namespace: ns, Name: "shop", StatefulSet: true,
		Annotations: map[string]string{"freezeframe.io/blueprint": "mariadb-hooks"},
	})
	if err != nil {
		t.Fatal(err)
	}
	applyBlueprint(t, ns, mariadbBlueprint(ns))
	if _, err := mariadb(t.Context(), db.Server, "CREATE DATABASE app; CREATE TABLE app.t (n INT PRIMARY KEY, note VARCHAR(64)) ENGINE=InnoDB;"+
		"INSERT INTO app.t VALUES (1, 'before'), (2, 'before'), (3, 'before')"); err != nil {
		t.Fatal(err)
	}
	return db
}

// insert is an INSERT from its own session (a client process on the host), running in
// the background.
type insert struct {
	n       int
	started time.Time
	doneAt  time.Time
	err     error
	done    chan struct{}
}

func startInsert(ctx context.Context, s *sandbox.Server, n int) *insert {
	in := &insert{n: n, started: time.Now(), done: make(chan struct{})}
	go func() {
		defer close(in.done)
		_, in.err = mariadb(ctx, s, fmt.Sprintf("INSERT INTO app.t VALUES (%d, 'from another session')", n))
		in.doneAt = time.Now()
	}()
	return in
}

func (in *insert) finished() bool {
	select {
	case <-in.done:
		return true
	default:
		return false
	}
}

func (in *insert) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-in.done:
		if in.err != nil {
			t.Fatalf("INSERT %d: %v", in.n, in.err)
		}
	case <-time.After(timeout):
		t.Fatalf("INSERT %d still blocked after %s", in.n, timeout)
	}
}

// waitBlocked waits until the server shows the INSERT waiting for the global read lock,
// and returns its state.
func (in *insert) waitBlocked(t *testing.T, s *sandbox.Server) string {
	t.Helper()
	var state string
	q := fmt.Sprintf("SELECT STATE FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO app.t VALUES (%d,%%'", in.n)
	waitFor(t, 20*time.Second, fmt.Sprintf("INSERT %d waiting for the lock", in.n), func() (bool, error) {
		if in.finished() {
			t.Fatalf("INSERT %d was not blocked: it finished (err %v) at %s", in.n, in.err, in.doneAt.Format("15:04:05.000"))
		}
		out, err := mariadb(t.Context(), s, q)
		state = out
		return strings.Contains(strings.ToLower(out), "lock"), err
	})
	return state
}

// MariaDB with FLUSH TABLES WITH READ LOCK held by a KubeExecSession: an INSERT from
// another session waits for the whole snapshot (the snapshotter's create is held by the
// API proxy until the test has looked) and completes after the resume; the snapshot does
// not have its row.
func TestMariaDBSessionLockHeldForSnapshot(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	db := startMariaDB(t, "mariadb-lock")
	up, proxy := startUpHoldingSnapshots(t)
	client := connect(t, up)

	id := requestBackup(t, up, client, db.Namespace, events.KindStatefulSet, db.Workload)
	f := followBackup(t, client, id)
	f.waitKind(t, events.KindQuiesced, time.Minute)
	in := startInsert(t.Context(), db.Server, 4)
	state := in.waitBlocked(t, db.Server)
	waitHeld(t, proxy)
	if in.finished() {
		t.Fatalf("INSERT finished while the snapshot was being taken")
	}
	t.Logf("INSERT 4 blocked (%q) while frozen; letting the snapshot be cut", state)
	proxy.Release()

	evs := f.wait(t, time.Minute)
	t.Logf("backup %s:\n%s", id, harness.Timeline(evs))
	requireKinds(t, evs, events.KindRequested, events.KindQuiesced, events.KindSnapshotted, events.KindResumed)
	if r, _ := harness.Payload[events.Resumed](evs); !r.Succeeded {
		t.Fatalf("resumed: %+v", r)
	}
	in.wait(t, 10*time.Second)
	snapshotted := evs[2].Time()
	if !in.doneAt.After(snapshotted) {
		t.Errorf("INSERT completed at %s, before the snapshot was reported cut (%s)", in.doneAt.Format("15:04:05.000"), snapshotted.Format("15:04:05.000"))
	}
	t.Logf("INSERT 4 waited %s, completed %s after Snapshotted", in.doneAt.Sub(in.started), in.doneAt.Sub(snapshotted))
	if got, err := mariadb(t.Context(), db.Server, "SELECT GROUP_CONCAT(n ORDER BY n) FROM app.t"); err != nil || got != "1,2,3,4" {
		t.Fatalf("live rows %q, %v", got, err)
	}

	// The snapshot, started in a fresh MariaDB: the rows from before, not the blocked one.
	s, _ := harness.Payload[events.Snapshotted](evs)
	dir := copyDir(t, snapshotDir(t, db.Namespace, s.Snapshots[0].Name))
	fresh, err := c.RunServer(t.Context(), sandbox.MariaDB, filepath.Join(dir, sandbox.MariaDB), db.Password)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fresh.Stop)
	if got, err := mariadb(t.Context(), fresh, "SELECT GROUP_CONCAT(n ORDER BY n) FROM app.t"); err != nil || got != "1,2,3" {
		t.Fatalf("rows in the snapshot %q (%v), want 1,2,3", got, err)
	}
}

// kill -9 of `freezeframe up` while it holds the FTWRL session: its connection to the
// API server closes, the client in the pod reads EOF and exits, MariaDB ends the session
// and releases the lock: the blocked INSERT completes. The restarted freezeframe fails
// the backup rather than calling it consistent.
func TestMariaDBKillHolderReleasesLock(t *testing.T) {
	t.Parallel()
	db := startMariaDB(t, "mariadb-kill")
	// The snapshot is never cut: the freeze lasts until the kill.
	up, proxy := startUpHoldingSnapshots(t, "HOOKER_MAX_FREEZE=2m", "HOOKER_LEASE_STALE_AFTER=2s")
	client := connect(t, up)

	id := requestBackup(t, up, client, db.Namespace, events.KindStatefulSet, db.Workload)
	followBackup(t, client, id).waitKind(t, events.KindQuiesced, time.Minute)
	waitHeld(t, proxy)
	in := startInsert(t.Context(), db.Server, 4)
	in.waitBlocked(t, db.Server)

	killed := time.Now()
	if err := up.Kill(); err != nil {
		t.Fatal(err)
	}
	in.wait(t, 15*time.Second)
	t.Logf("kill -9 of freezeframe up (pid gone at +%s); the blocked INSERT completed %s after the kill",
		time.Since(killed).Round(time.Millisecond), in.doneAt.Sub(killed).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := mariadb(ctx, db.Server, "INSERT INTO app.t VALUES (5, 'after the kill')"); err != nil {
		t.Fatalf("write after the kill: %v", err)
	}

	// Restarted, freezeframe finds the dead holder's lease and fails the backup.
	if err := up.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	client = connect(t, up)
	evs := followBackup(t, client, id).wait(t, time.Minute)
	t.Logf("backup %s:\n%s", id, harness.Timeline(evs))
	if last := evs[len(evs)-1]; events.Succeeded(last) {
		t.Fatalf("backup succeeded although its lock session died")
	}
	var freezeFailed bool
	for _, f := range harness.Payloads[events.BackupFailed](evs) {
		freezeFailed = freezeFailed || f.Step == events.StepFreeze
	}
	if !freezeFailed {
		t.Errorf("no BackupFailed at step %s", events.StepFreeze)
	}
}
