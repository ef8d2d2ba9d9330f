package pipeline

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/freezeframe/freezeframe/services/hooker/podexec"
)

// Exec is the instant exec stand-in. It tells the blueprint's pre-hook
// ("CLIENT PAUSE") from its post-hook ("CLIENT UNPAUSE") by the command.
type Exec struct {
	mu        sync.Mutex
	preEnd    map[string]time.Time // by namespace
	postStart map[string]time.Time
}

func newExec() *Exec {
	return &Exec{preEnd: map[string]time.Time{}, postStart: map[string]time.Time{}}
}

// Exec implements freeze.Executor.
func (e *Exec) Exec(_ context.Context, req podexec.Request) (podexec.Result, error) {
	post := strings.Contains(strings.Join(req.Command, " "), "UNPAUSE")
	now := time.Now()
	e.mu.Lock()
	if post {
		e.postStart[req.Namespace] = now
	} else {
		e.preEnd[req.Namespace] = now
	}
	e.mu.Unlock()
	return podexec.Result{}, nil
}

// Frozen returns when the pre-hook of the workload in namespace ended and
// when its post-hook started, for its latest backup.
func (e *Exec) Frozen(namespace string) (preEnd, postStart time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.preEnd[namespace], e.postStart[namespace]
}
