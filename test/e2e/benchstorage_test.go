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
// the time from before the first create until the last of them is cut: its
// status.creationTime is seen on its bound VolumeSnapshotContent, where the
// snapshotter's CutDuration sees it too (the VolumeSnapshot gets it a
// controller hop later). The snapshots are deleted again, and gone, before it
// returns.
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

	// Contents carry no labels: they are told apart by the snapshot they are
	// bound to. The watch starts from a list (an empty resourceVersion would
	// replay every content the rounds before left) and starts again from a
	// fresh one when the apiserver ends it.
	contents := cs.SnapshotV1().VolumeSnapshotContents()
	names := map[string]string{} // snapshot -> claim
	for i, claim := range claims {
		names[fmt.Sprintf("storage-%s-%d", run, i)] = claim
	}
	cut := map[string]bool{}
	var last time.Time
	seen := func(vsc *snapshotv1.VolumeSnapshotContent) {
		ref := vsc.Spec.VolumeSnapshotRef
		claim, ours := names[ref.Name]
		if ref.Namespace != namespace || !ours || cut[ref.Name] || vsc.Status == nil {
			return
		}
		if e := vsc.Status.Error; e != nil && e.Message != nil {
			b.Fatalf("storage bound: snapshot %s of claim %s: %s", ref.Name, claim, *e.Message)
		}
		if vsc.Status.CreationTime != nil {
			cut[ref.Name] = true
			last = time.Now()
		}
	}
	watchFromList := func() watch.Interface {
		list, err := contents.List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatalf("storage bound: list snapshot contents: %v", err)
		}
		for i := range list.Items {
			seen(&list.Items[i])
		}
		w, err := contents.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
		if err != nil {
			b.Fatalf("storage bound: watch snapshot contents: %v", err)
		}
		return w
	}
	w := watchFromList()
	defer func() { w.Stop() }()
	class := sandbox.SnapshotClassName
	start := time.Now()
	errs := make([]error, len(claims))
	var creates sync.WaitGroup
	for i, claim := range claims {
		creates.Go(func() {
			_, errs[i] = snaps.Create(ctx, &snapshotv1.VolumeSnapshot{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("storage-%s-%d", run, i), Labels: map[string]string{storageRunLabel: run}},
				Spec: snapshotv1.VolumeSnapshotSpec{
					Source:                  snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: &claim},
					VolumeSnapshotClassName: &class,
				},
			}, metav1.CreateOptions{})
		})
	}
	creates.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatalf("storage bound: create snapshots: %v", err)
	}
	for len(cut) < len(claims) {
		select {
		case <-ctx.Done():
			b.Fatalf("storage bound: %d of %d snapshots cut: %v", len(cut), len(claims), ctx.Err())
		case ev, ok := <-w.ResultChan():
			switch {
			case !ok || ev.Type == watch.Error:
				// Ended by the apiserver (a timeout, a compacted
				// resourceVersion): what changed meanwhile is in the list.
				b.Logf("storage bound: content watch ended (open %t, %v): listing again", ok, ev.Object)
				w.Stop()
				w = watchFromList()
			case ev.Type != watch.Deleted:
				if vsc, isContent := ev.Object.(*snapshotv1.VolumeSnapshotContent); isContent {
					seen(vsc)
				}
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
