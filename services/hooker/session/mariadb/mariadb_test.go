//go:build linux

// Package mariadb_test holds a lock session in a real MariaDB, started as the
// sandbox starts the servers behind its pods. It is a package of its own, not
// a test of package session, because it imports the sandbox's module: the
// modules that import the hooker's packages (the CLI, the benchmarks) then
// need nothing of it.
package mariadb_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/services/hooker/podexec/podexectest"
	"github.com/freezeframe/freezeframe/services/hooker/session"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// These tests hold FLUSH TABLES WITH READ LOCK in a real MariaDB, through a
// session whose command runs as a local process: what kwok does with a pod
// exec in the sandbox. They need mariadbd, mariadb and mariadb-install-db
// (Debian: apt-get install mariadb-server mariadb-client).

// holderEnv turns the test binary into a hooker holding a session (see
// runHolder), for the kill -9 test.
const (
	holderEnv       = "FREEZEFRAME_SESSION_HOLDER_PORT"
	holderClientEnv = "FREEZEFRAME_SESSION_HOLDER_CLIENT"
)

func TestMain(m *testing.M) {
	if os.Getenv(holderEnv) != "" {
		os.Exit(runHolder())
	}
	os.Exit(m.Run())
}

// mariadb is a throwaway mariadbd on a random loopback port, started as the
// sandbox starts the servers behind its pods; root has no password.
type mariadb struct {
	port   int
	client string
}

func startMariaDB(t *testing.T) *mariadb {
	t.Helper()
	client, err := exec.LookPath("mariadb")
	if err != nil {
		// make test installs it (test/sandbox/build.sh): a missing client is
		// a broken set-up, not a reason to prove nothing.
		t.Fatalf("mariadb client not found (%v): run `make sandbox-build` or apt-get install mariadb-server mariadb-client", err)
	}
	// Not t.TempDir(): the unix socket's path must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "ffmdb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	began := time.Now()
	srv, err := sandbox.StartServer(t.Context(), sandbox.MariaDB, filepath.Join(dir, "data"), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	m := &mariadb{port: srv.Port, client: client}
	if _, err := m.query(t.Context(), "CREATE DATABASE app; CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB"); err != nil {
		t.Fatal(err)
	}
	t.Logf("mariadbd ready on 127.0.0.1:%d in %s", m.port, time.Since(began).Round(time.Millisecond))
	return m
}

// clientCommand is the mariadb client's command line for this server.
func (m *mariadb) clientCommand(extra ...string) []string {
	return append([]string{m.client, "--no-defaults", "--protocol=TCP", "-h127.0.0.1", "-P" + strconv.Itoa(m.port), "-uroot"}, extra...)
}

// query runs SQL from a new connection and returns its output.
func (m *mariadb) query(ctx context.Context, sql string) (string, error) {
	args := m.clientCommand("-N", "-B", "-e", sql)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("query %q: %w: %s", sql, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

func (m *mariadb) rows(t *testing.T) int {
	t.Helper()
	out, err := m.query(t.Context(), "SELECT COUNT(*) FROM app.t")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("count: %v", err)
	}
	return n
}

func (m *mariadb) sessionSpec() session.Spec {
	return session.Spec{
		Namespace: "db", Pod: "mariadb-0", Container: "mariadb",
		Command:      m.clientCommand("-N", "--unbuffered"),
		Stdin:        "FLUSH TABLES WITH READ LOCK; SELECT 'FREEZEFRAME-LOCKED';\n",
		ReadyPattern: regexp.MustCompile(`FREEZEFRAME-LOCKED`),
		ReleaseInput: "UNLOCK TABLES;\n",
		ReadyTimeout: 30 * time.Second,
	}
}

// insert runs an INSERT from another connection in the background; the
// channel receives its result.
func (m *mariadb) insert(t *testing.T) <-chan error {
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	go func() {
		defer cancel()
		_, err := m.query(ctx, "INSERT INTO app.t (v) VALUES (1)")
		done <- err
	}()
	return done
}

// waitInsertBlocked polls the process list until the INSERT waits for the
// global read lock, and fails if it completes instead. MariaDB 10.4 and later
// implement FLUSH TABLES WITH READ LOCK with backup locks, and name the wait
// after them; MySQL calls it the global read lock.
func (m *mariadb) waitInsertBlocked(t *testing.T, done <-chan error) time.Duration {
	t.Helper()
	const q = "SELECT COUNT(*) FROM information_schema.PROCESSLIST" +
		" WHERE STATE IN ('Waiting for backup lock', 'Waiting for global read lock') AND INFO LIKE 'INSERT INTO app.t%'"
	began := time.Now()
	deadline := began.Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		out, err := m.query(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		if out == "1" {
			break
		}
		if time.Now().After(deadline) {
			pl, _ := m.query(t.Context(), "SELECT ID, STATE, INFO FROM information_schema.PROCESSLIST")
			t.Fatalf("the INSERT is not waiting for the global read lock after 10s; process list:\n%s", pl)
		}
		select {
		case err := <-done:
			t.Fatalf("the INSERT completed while the lock should be held (err %v)", err)
		case <-tick.C:
		}
	}
	select {
	case err := <-done:
		t.Fatalf("the INSERT completed while the lock should be held (err %v)", err)
	default:
	}
	return time.Since(began)
}

// waitInsert waits for the INSERT to complete once the lock is gone.
func waitInsert(t *testing.T, done <-chan error) time.Duration {
	t.Helper()
	began := time.Now()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("INSERT: %v", err)
		}
	case <-timer.C:
		t.Fatal("the INSERT still blocks 10s after the lock should be gone")
	}
	return time.Since(began)
}

func TestMariaDBSessionHoldsFTWRL(t *testing.T) {
	m := startMariaDB(t)

	tests := []struct {
		name string
		// end ends the session the way the case is about.
		end      func(t *testing.T, s *session.Session, p *podexectest.LocalProc)
		wantLost bool
	}{
		{
			name: "released",
			end: func(t *testing.T, s *session.Session, _ *podexectest.LocalProc) {
				if err := s.Release(t.Context()); err != nil {
					t.Fatalf("Release: %v", err)
				}
			},
		},
		{
			// What a hooker crash looks like from the pod: the stream closes
			// and the client reads EOF, without UNLOCK TABLES.
			name:     "stream closed",
			end:      func(t *testing.T, _ *session.Session, p *podexectest.LocalProc) { p.Stdin.Close() },
			wantLost: true,
		},
		{
			name: "client killed",
			end: func(t *testing.T, _ *session.Session, p *podexectest.LocalProc) {
				if err := p.Cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
			},
			wantLost: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := m.rows(t)
			ex := &podexectest.Local{Started: make(chan *podexectest.LocalProc, 1)}
			began := time.Now()
			s, err := session.Start(t.Context(), ex, m.sessionSpec())
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			locked := time.Since(began)
			proc := <-ex.Started
			t.Cleanup(func() { s.Release(context.WithoutCancel(t.Context())) })

			done := m.insert(t)
			blocked := m.waitInsertBlocked(t, done)

			ended := time.Now()
			tt.end(t, s, proc)
			endTook := time.Since(ended)
			unblocked := waitInsert(t, done)
			if got := m.rows(t); got != before+1 {
				t.Errorf("rows = %d, want %d", got, before+1)
			}
			if tt.wantLost {
				select {
				case <-s.Lost():
				case <-time.After(10 * time.Second):
					t.Fatal("the session is not lost 10s after its client went")
				}
				if !errors.Is(s.Err(), session.ErrLost) {
					t.Errorf("Err() = %v, want session.ErrLost", s.Err())
				}
			} else {
				select {
				case <-s.Lost():
					t.Errorf("released session counts as lost: %v", s.Err())
				default:
				}
			}
			t.Logf("lock taken in %s; INSERT seen waiting for it after %s; %s took %s; INSERT completed %s after that",
				locked.Round(time.Microsecond), blocked.Round(time.Microsecond), tt.name, endTook.Round(time.Microsecond), unblocked.Round(time.Microsecond))
		})
	}

	// The crash property itself: the process holding the session is killed
	// with SIGKILL, and the lock goes with it.
	t.Run("holder killed -9", func(t *testing.T) {
		before := m.rows(t)
		holder := exec.Command(os.Args[0])
		holder.Env = append(os.Environ(), holderEnv+"="+strconv.Itoa(m.port), holderClientEnv+"="+m.client)
		holder.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var holderErr bytes.Buffer
		holder.Stderr = &holderErr
		out, err := holder.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() {
			_ = holder.Wait() // killed on purpose
			close(exited)
		}()
		t.Cleanup(func() {
			_ = holder.Process.Kill()
			<-exited
		})
		held := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if sc.Text() == "HELD" {
					close(held)
				}
			}
		}()
		timer := time.NewTimer(30 * time.Second)
		defer timer.Stop()
		select {
		case <-held:
		case <-exited:
			t.Fatalf("holder exited: %s", holderErr.String())
		case <-timer.C:
			t.Fatalf("holder did not take the lock in 30s: %s", holderErr.String())
		}
		locked := time.Since(began)

		done := m.insert(t)
		blocked := m.waitInsertBlocked(t, done)
		killed := time.Now()
		if err := holder.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-exited
		reaped := time.Since(killed)
		unblocked := waitInsert(t, done)
		if got := m.rows(t); got != before+1 {
			t.Errorf("rows = %d, want %d", got, before+1)
		}
		t.Logf("holder started and took the lock in %s; INSERT seen waiting after %s; holder killed -9 and reaped in %s; INSERT completed %s after that",
			locked.Round(time.Microsecond), blocked.Round(time.Microsecond), reaped.Round(time.Microsecond), unblocked.Round(time.Microsecond))
	})

	// A client that buffers its output on a pipe never shows the ready line
	// in time; Start says so and leaves nothing locked.
	t.Run("buffered client", func(t *testing.T) {
		spec := m.sessionSpec()
		spec.Command = m.clientCommand("-N") // no --unbuffered
		spec.ReadyTimeout = time.Second
		_, err := session.Start(t.Context(), &podexectest.Local{}, spec)
		if !errors.Is(err, session.ErrTimeout) || !strings.Contains(err.Error(), "--unbuffered") {
			t.Fatalf("err = %v, want session.ErrTimeout with the --unbuffered hint", err)
		}
		waitInsert(t, m.insert(t))
	})
}

// runHolder is the test binary run as a hooker that holds a session until
// it is killed.
func runHolder() int {
	port, _ := strconv.Atoi(os.Getenv(holderEnv))
	m := &mariadb{port: port, client: os.Getenv(holderClientEnv)}
	// The process's own lifetime is the session's: nothing cancels it but
	// the kill.
	s, err := session.Start(context.Background(), &podexectest.Local{}, m.sessionSpec())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("HELD")
	<-s.Lost()
	fmt.Fprintln(os.Stderr, s.Err())
	return 1
}
