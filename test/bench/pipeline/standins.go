package pipeline

import (
	"context"
	"strings"
	"sync"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

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

// Cuts is the instant snapshot controller stand-in.
type Cuts struct {
	snaps *snapfake.Clientset
	ctx   context.Context

	mu      sync.Mutex
	created map[string]time.Time // by namespace
	cut     map[string]time.Time
	// hold, when not nil, keeps every cut waiting until it is closed.
	hold chan struct{}
	held int
}

// Hold makes the stand-in keep the cuts of snapshots created from now on
// waiting, every backup frozen and in flight, until Release.
func (c *Cuts) Hold() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold, c.held = make(chan struct{}), 0
}

// Held is how many cuts wait for Release.
func (c *Cuts) Held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held
}

// Release lets the held cuts happen, and the next ones at once.
func (c *Cuts) Release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold != nil {
		close(c.hold)
		c.hold = nil
	}
}

// newCuts cuts every VolumeSnapshot created through snaps as soon as the
// create call has stored it. A reactor rather than a watch: the fake
// clientset's watch channels hold 100 events and panic when full, which
// 1,000 backups at once would do.
func newCuts(ctx context.Context, snaps *snapfake.Clientset) *Cuts {
	c := &Cuts{snaps: snaps, ctx: ctx, created: map[string]time.Time{}, cut: map[string]time.Time{}}
	snaps.PrependReactor("create", "volumesnapshots", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s, ok := a.(k8stesting.CreateAction).GetObject().(*snapv1.VolumeSnapshot)
		if !ok {
			return false, nil, nil
		}
		now := time.Now()
		c.mu.Lock()
		c.created[s.Namespace] = now
		c.mu.Unlock()
		// The fake holds its lock through the whole create, so this status
		// update lands after the object is stored.
		go c.cutNow(s.Namespace, s.Name)
		return false, nil, nil
	})
	return c
}

func (c *Cuts) cutNow(namespace, name string) {
	c.mu.Lock()
	hold := c.hold
	if hold != nil {
		c.held++
	}
	c.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-c.ctx.Done():
			return
		}
	}
	api := c.snaps.SnapshotV1().VolumeSnapshots(namespace)
	s, err := api.Get(c.ctx, name, metav1.GetOptions{})
	if err != nil {
		return
	}
	ready := true
	s.Status = &snapv1.VolumeSnapshotStatus{CreationTime: &metav1.Time{Time: time.Now()}, ReadyToUse: &ready}
	if _, err := api.UpdateStatus(c.ctx, s, metav1.UpdateOptions{}); err != nil {
		return
	}
	now := time.Now()
	c.mu.Lock()
	c.cut[namespace] = now
	c.mu.Unlock()
}

// Took returns when the snapshot of the workload in namespace was asked for
// and when its cut was written, for its latest backup.
func (c *Cuts) Took(namespace string) (created, cut time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.created[namespace], c.cut[namespace]
}
