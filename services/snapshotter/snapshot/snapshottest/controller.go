package snapshottest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
)

// ControllerOptions say how the stand-in snapshot controller answers.
type ControllerOptions struct {
	// ReadyAtCut makes a snapshot ready to use as soon as it is cut;
	// otherwise it stays not ready until MarkReady, so a test can see that
	// the snapshotter does not wait for readiness.
	ReadyAtCut bool
	// CutTime is the status.creationTime reported; zero: the time of the cut.
	CutTime time.Time
	// Fail makes the snapshot of a claim report this error instead of a cut.
	Fail map[string]string
	// NeverCut leaves the snapshot of a claim uncut.
	NeverCut map[string]bool
}

// Controller stands in for the CSI snapshot controller on a fake snapshot
// clientset: it cuts each VolumeSnapshot created through the clientset,
// by writing the status the real controller writes (creationTime, bound
// content, readyToUse or an error), and records when, per namespace.
//
// It reacts to the create call rather than to a watch: the fake
// clientset's watch channels hold 100 events and panic when full, which a
// benchmark's thousand backups at once would do. A create that fails, or
// repeats one already cut, cuts nothing.
type Controller struct {
	tb    testing.TB // its Context ends the cuts in flight
	snaps *snapfake.Clientset
	opts  ControllerOptions

	wg      sync.WaitGroup
	mu      sync.Mutex
	stopped bool
	errs    []error
	created map[string]time.Time // by namespace: the latest create call
	cut     map[string]time.Time // by namespace: the latest cut written
	// hold, when not nil, keeps every cut waiting until it is closed.
	hold chan struct{}
	held int
}

// NewController runs a stand-in snapshot controller on snaps until tb ends;
// an API error of one of its cuts fails the test then. It sees each create
// before the reactors snaps already has (injected API errors, watch hubs),
// and cuts only what the create stored.
func NewController(tb testing.TB, snaps *snapfake.Clientset, o ControllerOptions) *Controller {
	tb.Helper()
	c := &Controller{tb: tb, snaps: snaps, opts: o, created: map[string]time.Time{}, cut: map[string]time.Time{}}
	snaps.PrependReactor("create", "volumesnapshots", c.react)
	tb.Cleanup(func() {
		c.mu.Lock()
		c.stopped = true
		c.mu.Unlock()
		c.wg.Wait()
		if err := errors.Join(c.errs...); err != nil {
			tb.Errorf("stand-in snapshot controller: %v", err)
		}
	})
	return c
}

func (c *Controller) react(a k8stesting.Action) (bool, runtime.Object, error) {
	s, ok := a.(k8stesting.CreateAction).GetObject().(*snapv1.VolumeSnapshot)
	if !ok {
		return false, nil, nil
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return false, nil, nil
	}
	c.created[s.Namespace] = now
	// The fake holds its lock through the whole create, so the cut's first
	// call waits until the object is stored (or refused).
	c.wg.Go(func() { c.cutOne(s.Namespace, s.Name) })
	return false, nil, nil
}

func (c *Controller) cutOne(namespace, name string) {
	c.mu.Lock()
	hold := c.hold
	if hold != nil {
		c.held++
	}
	c.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-c.tb.Context().Done():
			return
		}
	}
	api := c.snaps.SnapshotV1().VolumeSnapshots(namespace)
	s, err := api.Get(c.tb.Context(), name, metav1.GetOptions{})
	if err != nil || s.Status != nil {
		c.report(err) // not found: the create was refused, or the snapshot is gone
		return
	}
	pvc := ""
	if s.Spec.Source.PersistentVolumeClaimName != nil {
		pvc = *s.Spec.Source.PersistentVolumeClaimName
	}
	at := c.opts.CutTime
	if at.IsZero() {
		at = time.Now()
	}
	switch msg, fail := c.opts.Fail[pvc]; {
	case c.opts.NeverCut[pvc]:
		return
	case fail:
		s.Status = &snapv1.VolumeSnapshotStatus{Error: &snapv1.VolumeSnapshotError{Time: &metav1.Time{Time: at}, Message: &msg}}
	default:
		content, ready := "snapcontent-"+s.Name, c.opts.ReadyAtCut
		s.Status = &snapv1.VolumeSnapshotStatus{BoundVolumeSnapshotContentName: &content, CreationTime: &metav1.Time{Time: at}, ReadyToUse: &ready}
	}
	// Stamped before the write: once it lands the backup may end at once,
	// and Took must not return the previous cut then.
	now := time.Now()
	c.mu.Lock()
	c.cut[namespace] = now
	c.mu.Unlock()
	if _, err := api.UpdateStatus(c.tb.Context(), s, metav1.UpdateOptions{}); err != nil {
		c.report(err)
	}
}

// report keeps an API error for the end of the test, unless the test is
// over or the snapshot is gone.
func (c *Controller) report(err error) {
	if err == nil || apierrors.IsNotFound(err) || c.tb.Context().Err() != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, err)
}

// MarkReady makes every snapshot cut so far ready to use, as the
// controller does once the storage has the data.
func (c *Controller) MarkReady(ctx context.Context) error {
	l, err := c.snaps.SnapshotV1().VolumeSnapshots(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("mark ready: %w", err)
	}
	for _, s := range l.Items {
		if s.Status == nil || s.Status.CreationTime == nil {
			continue
		}
		ready := true
		s.Status.ReadyToUse = &ready
		if _, err := c.snaps.SnapshotV1().VolumeSnapshots(s.Namespace).UpdateStatus(ctx, &s, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("mark %s/%s ready: %w", s.Namespace, s.Name, err)
		}
	}
	return nil
}

// Hold keeps the cuts of snapshots created from now on waiting, their
// backups frozen and in flight, until Release.
func (c *Controller) Hold() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold, c.held = make(chan struct{}), 0
}

// Held is how many cuts wait for Release.
func (c *Controller) Held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held
}

// Release lets the held cuts happen, and the next ones at once.
func (c *Controller) Release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold != nil {
		close(c.hold)
		c.hold = nil
	}
}

// Took returns when the latest snapshot in namespace was asked for (its
// create call) and when its cut status was written.
func (c *Controller) Took(namespace string) (created, cut time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.created[namespace], c.cut[namespace]
}
