package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is a program run as its own process group, killed with the test binary
// (Pdeathsig), whose output is appended to a log file across restarts.
type Proc struct {
	Name string
	Bin  string
	Args []string
	Env  []string
	Log  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

// Start starts the process; it fails if it is still running.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited != nil {
		select {
		case <-p.exited:
		default:
			return fmt.Errorf("start %s: still running", p.Name)
		}
	}
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.starts++
	fmt.Fprintf(logf, "==== %s (start %d) at %s\n", p.Name, p.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Env = p.Env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	return nil
}

// Running reports whether the process has not exited.
func (p *Proc) Running() bool {
	p.mu.Lock()
	ch := p.exited
	p.mu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// Exited is closed when the current process exits.
func (p *Proc) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited == nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return p.exited
}

// Pid is the current process's id (0 before Start).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Signal sends sig to the process group.
func (p *Proc) Signal(sig syscall.Signal) error {
	pid := p.Pid()
	if pid == 0 || !p.Running() {
		return nil
	}
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s %v: %w", p.Name, sig, err)
	}
	return nil
}

// Kill sends SIGKILL to the process group and waits until the process is gone.
func (p *Proc) Kill(ctx context.Context) error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	return p.wait(ctx, 10*time.Second)
}

// Stop sends SIGTERM (and SIGCONT, in case it is stopped), then SIGKILL after
// grace.
func (p *Proc) Stop(ctx context.Context, grace time.Duration) error {
	if !p.Running() {
		return nil
	}
	_ = p.Signal(syscall.SIGTERM)
	_ = p.Signal(syscall.SIGCONT)
	if err := p.wait(ctx, grace); err == nil {
		return nil
	}
	return p.Kill(ctx)
}

func (p *Proc) wait(ctx context.Context, d time.Duration) error {
	select {
	case <-p.Exited():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for %s to exit: %w", p.Name, ctx.Err())
	case <-time.After(d):
		return fmt.Errorf("wait for %s to exit: still running after %s", p.Name, d)
	}
}
