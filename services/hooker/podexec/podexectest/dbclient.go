package podexectest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/freezeframe/freezeframe/services/hooker/podexec"
)

// Exit is how a DBClient's command ends: its exit status and what it
// printed on stderr last.
type Exit struct {
	Code   int
	Stderr string
}

// DBClient stands in for a database client run in a pod with stdin open, as
// a lock session runs mariadb or psql: it reads statements from stdin line
// by line, answers a line that takes the lock ("LOCK" without "UNLOCK")
// with a ready line, and exits when stdin ends. The options make it
// misbehave. One DBClient serves one Exec; an Exec without stdin (a plain
// hook) succeeds at once.
type DBClient struct {
	// Ready is the ready output, written in these pieces; "LOCKED\n" when
	// nil.
	Ready []string
	// Silent never prints the ready output.
	Silent bool
	// OnFirstLine, when set, exits so after reading the first line.
	OnFirstLine *Exit
	// ExitAfterReady prints the ready output, then exits with status 0,
	// ignoring the rest of stdin (mariadb -e does).
	ExitAfterReady bool
	// IgnoreEOF keeps running after stdin ends, until the context ends.
	IgnoreEOF bool
	// OnEOF is how it exits once stdin ended.
	OnEOF Exit
	// Crash, once closed, makes it exit at once with status 137 and a lost
	// connection, as a client whose server restarted does.
	Crash chan struct{}

	once   sync.Once
	mu     sync.Mutex
	lines  []string
	ctx    context.Context
	exited chan struct{} // closed when Exec returns
}

func (f *DBClient) init() { f.once.Do(func() { f.exited = make(chan struct{}) }) }

// Done is closed when Exec has returned.
func (f *DBClient) Done() <-chan struct{} {
	f.init()
	return f.exited
}

// Exec runs the stand-in client on req's stdin.
func (f *DBClient) Exec(ctx context.Context, r podexec.Request) (podexec.Result, error) {
	if r.Stdin == nil {
		return podexec.Result{}, nil
	}
	f.init()
	defer close(f.exited)
	f.mu.Lock()
	f.ctx = ctx
	f.mu.Unlock()

	lines := make(chan string)
	eof := make(chan struct{})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		sc := bufio.NewScanner(r.Stdin)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-stop:
				return
			}
		}
		close(eof)
	}()
	exit := func(e Exit) (podexec.Result, error) {
		if e.Stderr != "" && r.Stderr != nil {
			fmt.Fprintln(r.Stderr, e.Stderr)
		}
		if e.Code != 0 {
			return podexec.Result{ExitCode: e.Code, Stderr: []byte(e.Stderr)}, &podexec.ExitError{Code: e.Code, Stderr: e.Stderr}
		}
		return podexec.Result{}, nil
	}
	for {
		select {
		case l := <-lines:
			f.mu.Lock()
			f.lines = append(f.lines, l)
			n := len(f.lines)
			f.mu.Unlock()
			if n == 1 && f.OnFirstLine != nil {
				return exit(*f.OnFirstLine)
			}
			if strings.Contains(l, "LOCK") && !strings.Contains(l, "UNLOCK") && !f.Silent {
				pieces := f.Ready
				if pieces == nil {
					pieces = []string{"LOCKED\n"}
				}
				for _, p := range pieces {
					io.WriteString(r.Stdout, p)
				}
				if f.ExitAfterReady {
					return exit(Exit{})
				}
			}
		case <-eof:
			if f.IgnoreEOF {
				eof = nil
				continue
			}
			return exit(f.OnEOF)
		case <-f.Crash:
			return exit(Exit{Code: 137, Stderr: "ERROR 2013 (HY000): Lost connection to server during query"})
		case <-ctx.Done():
			return podexec.Result{}, fmt.Errorf("exec in %s/%s: %w", r.Namespace, r.Pod, context.Cause(ctx))
		}
	}
}

// Lines returns the lines read from stdin so far.
func (f *DBClient) Lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

// ExecContext is the context Exec was given.
func (f *DBClient) ExecContext() context.Context {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctx
}
