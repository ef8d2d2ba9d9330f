package pipeline

import (
	"sync"

	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"
)

// deepWatches replaces the fake clientset's VolumeSnapshot watches, whose
// channels hold 100 events and panic when a burst (1,000 creates, then
// 1,000 cuts) outruns the snapshotter's informer, with watches that buffer
// watchBuffer events. Creates and updates go to the fake's tracker as
// before, and are then sent to every open watch; deletes are not (the
// benchmarks delete nothing).
func deepWatches(snaps *snapfake.Clientset) {
	h := &hub{watches: map[*hubWatch]string{}}
	store := k8stesting.ObjectReaction(snaps.Tracker())
	snaps.PrependReactor("*", "volumesnapshots", func(a k8stesting.Action) (bool, runtime.Object, error) {
		var t watch.EventType
		switch a.GetVerb() {
		case "create":
			t = watch.Added
		case "update", "patch":
			t = watch.Modified
		default:
			return false, nil, nil
		}
		handled, obj, err := store(a)
		if err == nil && obj != nil {
			h.send(a.GetNamespace(), t, obj.DeepCopyObject())
		}
		return handled, obj, err
	})
	snaps.PrependWatchReactor("volumesnapshots", func(a k8stesting.Action) (bool, watch.Interface, error) {
		return true, h.open(a.GetNamespace()), nil
	})
}

const watchBuffer = 1 << 16

type hub struct {
	mu      sync.Mutex
	watches map[*hubWatch]string // -> namespace, "" for all
}

type hubWatch struct {
	h  *hub
	ch chan watch.Event
}

func (h *hub) open(namespace string) *hubWatch {
	w := &hubWatch{h: h, ch: make(chan watch.Event, watchBuffer)}
	h.mu.Lock()
	h.watches[w] = namespace
	h.mu.Unlock()
	return w
}

func (h *hub) send(namespace string, t watch.EventType, obj runtime.Object) {
	if a, err := meta.Accessor(obj); err == nil && namespace == "" {
		namespace = a.GetNamespace()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for w, ns := range h.watches {
		if ns == "" || ns == namespace {
			w.ch <- watch.Event{Type: t, Object: obj}
		}
	}
}

func (w *hubWatch) ResultChan() <-chan watch.Event { return w.ch }

func (w *hubWatch) Stop() {
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	if _, open := w.h.watches[w]; open {
		delete(w.h.watches, w)
		close(w.ch)
	}
}
