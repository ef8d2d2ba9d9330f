package e2e

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapshotclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/freezeframe/freezeframe/test/sandbox"
)

// storageRunLabel marks the VolumeSnapshots of one storageBound run, so that
// they are watched and deleted together and no one else's are.
const storageRunLabel = "bench.freezeframe.dev/storage-run"

// storageBound is the storage's own throughput bound for claims (issue 16,
// item 3): the same volumes freezeframe backs up, snapshotted with no
// freezeframe at all, by creating one VolumeSnapshot per claim at once; it is
// the time from before the first create until the last of them is cut (its
// status.creationTime is seen, as the snapshotter's CutDuration counts). The
// snapshots are deleted again, and gone, before it returns.
func storageBound(b *testing.B, namespace string, claims []string) time.Duration {
	b.Helper()
	c := sandbox.Shared(b)
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	// The storage's bound, not our client's: no client-side throttling.
	cfg := rest.CopyConfig(c.Config)
	cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	cs, err := snapshotclient.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	snaps := cs.SnapshotV1().VolumeSnapshots(namespace)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	selector := storageRunLabel + "=" + run
	defer func() {
		if err := deleteStorageRun(context.WithoutCancel(ctx), snaps, selector); err != nil {
			b.Error(err)
		}
	}()

	w, err := snaps.Watch(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	class := sandbox.SnapshotClassName
	start := time.Now()
	errs := make([]error, len(claims))
	var creates sync.WaitGroup
	for i, claim := range claims {
		creates.Go(func() {
			pvc := claim
			_, errs[i] = snaps.Create(ctx, &snapshotv1.VolumeSnapshot{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("storage-%s-%d", run, i), Labels: map[string]string{storageRunLabel: run}},
				Spec: snapshotv1.VolumeSnapshotSpec{
					Source:                  snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc},
					VolumeSnapshotClassName: &class,
				},
			}, metav1.CreateOptions{})
		})
	}
	creates.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatalf("storage bound: create snapshots: %v", err)
	}
	cut := map[string]bool{}
	var last time.Time
	for len(cut) < len(claims) {
		select {
		case <-ctx.Done():
			b.Fatalf("storage bound: %d of %d snapshots cut: %v", len(cut), len(claims), ctx.Err())
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatalf("storage bound: watch closed with %d of %d snapshots cut", len(cut), len(claims))
			}
			vs, isSnap := ev.Object.(*snapshotv1.VolumeSnapshot)
			if !isSnap || ev.Type == watch.Deleted {
				continue
			}
			if vs.Status != nil && vs.Status.Error != nil && vs.Status.Error.Message != nil {
				b.Fatalf("storage bound: snapshot %s of %s: %s", vs.Name, *vs.Spec.Source.PersistentVolumeClaimName, *vs.Status.Error.Message)
			}
			if vs.Status != nil && vs.Status.CreationTime != nil && !cut[vs.Name] {
				cut[vs.Name] = true
				last = time.Now()
			}
		}
	}
	return last.Sub(start)
}

// deleteStorageRun deletes the snapshots of one storageBound run and waits
// until they are gone (their contents and the driver's copies go with them:
// the class's deletionPolicy is Delete).
func deleteStorageRun(ctx context.Context, snaps interface {
	DeleteCollection(context.Context, metav1.DeleteOptions, metav1.ListOptions) error
	List(context.Context, metav1.ListOptions) (*snapshotv1.VolumeSnapshotList, error)
}, selector string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := snaps.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: selector}); err != nil {
		return fmt.Errorf("storage bound: delete snapshots %s: %w", selector, err)
	}
	for {
		list, err := snaps.List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil && len(list.Items) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			n := -1
			if list != nil {
				n = len(list.Items)
			}
			return fmt.Errorf("storage bound: %d snapshots %s still there: %w", n, selector, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
