package snapshot

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// cutWatch follows every freezeframe VolumeSnapshot (or VolumeGroupSnapshot)
// through one shared informer and wakes the handlers waiting for theirs to
// be cut or ready. One watch for the whole service, rather than one per
// backup, keeps API calls (and client-side throttling) out of the time an
// application is frozen.
type cutWatch struct {
	informer cache.SharedIndexInformer
	statusOf func(obj any) (snapStatus, bool)
	// contents follows the snapshots' bound contents, which the CSI
	// sidecar marks cut first: the snapshot controller copies the cut to
	// the snapshot a hop later, and for a group snapshot seconds later.
	contents        cache.SharedIndexInformer
	contentStatusOf func(obj any) (snapStatus, bool)

	mu sync.Mutex
	// waits are the backups waiting, by namespace/name of a snapshot; more
	// than one when a duplicate Quiesced is handled at the same time.
	waits map[string]map[*cutWait]struct{}
}

// snapStatus is what the watch needs of a VolumeSnapshot or a
// VolumeGroupSnapshot.
type snapStatus struct {
	namespace, name string
	uid             types.UID
	class           string
	cutAt           time.Time
	ready           bool
	restoreSize     string
	// errMsg is the status error, if any ("no message" when it has none).
	errMsg string
}

func volumeSnapshotStatus(obj any) (snapStatus, bool) {
	s, ok := obj.(*snapv1.VolumeSnapshot)
	if !ok {
		return snapStatus{}, false
	}
	out := snapStatus{namespace: s.Namespace, name: s.Name, uid: s.UID}
	if s.Spec.VolumeSnapshotClassName != nil {
		out.class = *s.Spec.VolumeSnapshotClassName
	}
	if st := s.Status; st != nil {
		if st.CreationTime != nil {
			out.cutAt = st.CreationTime.Time
		}
		out.ready = st.ReadyToUse != nil && *st.ReadyToUse
		if st.RestoreSize != nil {
			out.restoreSize = st.RestoreSize.String()
		}
		out.errMsg = errorMessage(st.Error)
	}
	return out, true
}

func errorMessage(e *snapv1.VolumeSnapshotError) string {
	switch {
	case e == nil:
		return ""
	case e.Message != nil && isControllerConflict(*e.Message):
		// The snapshot controller lost an optimistic-concurrency race on
		// its own object and retries: not the storage failing the snapshot.
		return ""
	case e.Message != nil && *e.Message != "":
		return *e.Message
	}
	return "no message"
}

// isControllerConflict reports a status error that only says the snapshot
// controller's update of its own object hit a newer version (the API
// server's conflict message). The controller retries it; seen on the
// sandbox under load as "snapshot controller failed to update ... the
// object has been modified". The status error carries no code, only text.
func isControllerConflict(msg string) bool {
	return strings.Contains(msg, "the object has been modified; please apply your changes to the latest version")
}

// volumeSnapshotContentStatus reports a VolumeSnapshotContent as the status
// of the VolumeSnapshot it is bound to.
func volumeSnapshotContentStatus(obj any) (snapStatus, bool) {
	c, ok := obj.(*snapv1.VolumeSnapshotContent)
	if !ok {
		return snapStatus{}, false
	}
	ref := c.Spec.VolumeSnapshotRef
	out := snapStatus{namespace: ref.Namespace, name: ref.Name, uid: ref.UID}
	if st := c.Status; st != nil {
		if st.CreationTime != nil {
			out.cutAt = time.Unix(0, *st.CreationTime)
		}
		// Readiness is taken from the VolumeSnapshot: a restore names it,
		// and the controller marks it ready a hop after its content.
		out.errMsg = errorMessage(st.Error)
	}
	return out, true
}

func newVolumeSnapshotWatch(api SnapshotAPI, log *slog.Logger) (*cutWatch, error) {
	inf := newInformer(api, &snapv1.VolumeSnapshot{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = LabelBackupID
			return api.SnapshotV1().VolumeSnapshots(metav1.NamespaceAll).List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = LabelBackupID
			return api.SnapshotV1().VolumeSnapshots(metav1.NamespaceAll).Watch(ctx, o)
		})
	w, err := newCutWatch(inf, volumeSnapshotStatus, "volumesnapshot", log)
	if err != nil {
		return nil, err
	}
	// Contents carry no labels of ours; every content is followed.
	contents := newInformer(api, &snapv1.VolumeSnapshotContent{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return api.SnapshotV1().VolumeSnapshotContents().List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return api.SnapshotV1().VolumeSnapshotContents().Watch(ctx, o)
		})
	if err := w.followContents(contents, volumeSnapshotContentStatus); err != nil {
		return nil, fmt.Errorf("volumesnapshotcontent watch: %w", err)
	}
	return w, nil
}

func newCutWatch(inf cache.SharedIndexInformer, statusOf func(any) (snapStatus, bool), what string, log *slog.Logger) (*cutWatch, error) {
	w := &cutWatch{informer: inf, statusOf: statusOf, waits: map[string]map[*cutWait]struct{}{}}
	if err := inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
		log.WarnContext(ctx, what+" watch interrupted, restarting", "err", err)
	}); err != nil {
		return nil, fmt.Errorf("%s watch: %w", what, err)
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.observe(obj, false) },
		UpdateFunc: func(_, obj any) { w.observe(obj, false) },
		DeleteFunc: func(obj any) { w.observe(obj, true) },
	}); err != nil {
		return nil, fmt.Errorf("%s watch: %w", what, err)
	}
	return w, nil
}

func stripManagedFields(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}

// refIndex indexes contents by the namespace/name of the snapshot they are
// bound to.
const refIndex = "snapshotRef"

// followContents makes the watch also learn cuts, readiness and errors from
// the snapshots' contents. statusOf reports a content's status under the
// namespace, name and uid of the snapshot it is bound to.
func (w *cutWatch) followContents(inf cache.SharedIndexInformer, statusOf func(any) (snapStatus, bool)) error {
	w.contents, w.contentStatusOf = inf, statusOf
	if err := inf.AddIndexers(cache.Indexers{refIndex: func(obj any) ([]string, error) {
		s, ok := statusOf(obj)
		if !ok || s.name == "" {
			return nil, nil
		}
		return []string{s.namespace + "/" + s.name}, nil
	}}); err != nil {
		return err
	}
	// A content going away says nothing about the snapshot: only updates.
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.observeWith(statusOf, obj, false) },
		UpdateFunc: func(_, obj any) { w.observeWith(statusOf, obj, false) },
	})
	return err
}

func (w *cutWatch) informers() []cache.SharedIndexInformer {
	if w.contents == nil {
		return []cache.SharedIndexInformer{w.informer}
	}
	return []cache.SharedIndexInformer{w.informer, w.contents}
}

// run runs the informers until ctx ends.
func (w *cutWatch) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, inf := range w.informers() {
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	wg.Wait()
}

// synced waits until the informers have listed everything once.
func (w *cutWatch) synced(ctx context.Context) bool {
	for _, inf := range w.informers() {
		if !cache.WaitFor(ctx, "", inf.HasSyncedChecker()) {
			return false
		}
	}
	return true
}

// current is what the caches know of one snapshot: its own status, with
// the cut taken from its content when the snapshot does not show it yet.
func (w *cutWatch) current(obj any) (snapStatus, bool) {
	st, ok := w.statusOf(obj)
	if !ok || !st.cutAt.IsZero() || w.contents == nil {
		return st, ok
	}
	objs, _ := w.contents.GetIndexer().ByIndex(refIndex, st.namespace+"/"+st.name)
	for _, c := range objs {
		if cs, ok := w.contentStatusOf(c); ok && cs.uid == st.uid && !cs.cutAt.IsZero() {
			st.cutAt = cs.cutAt
		}
	}
	return st, true
}

func (w *cutWatch) observe(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj, deleted = d.Obj, true
	}
	w.observeWith(w.statusOf, obj, deleted)
}

func (w *cutWatch) observeWith(statusOf func(any) (snapStatus, bool), obj any, deleted bool) {
	s, ok := statusOf(obj)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for c := range w.waits[s.namespace+"/"+s.name] {
		c.observeLocked(s, deleted, false)
	}
}

// wait registers interest in snapshots of one namespace, given as name ->
// claim. Call it before creating them, so that no status change is missed;
// stop it when done.
func (w *cutWatch) wait(namespace string, claims map[string]string) *cutWait {
	c := &cutWait{w: w, namespace: namespace, notify: make(chan struct{}, 1), vols: map[string]*volume{}}
	w.mu.Lock()
	defer w.mu.Unlock()
	for n, pvc := range claims {
		c.vols[n] = &volume{pvc: pvc}
		key := namespace + "/" + n
		if w.waits[key] == nil {
			w.waits[key] = map[*cutWait]struct{}{}
		}
		w.waits[key][c] = struct{}{}
		// A snapshot left by an earlier delivery may be cut already.
		if obj, ok, _ := w.informer.GetStore().GetByKey(key); ok {
			if s, ok := w.statusOf(obj); ok {
				c.observeLocked(s, false, false)
			}
		}
		if w.contents != nil {
			objs, _ := w.contents.GetIndexer().ByIndex(refIndex, key)
			for _, obj := range objs {
				if s, ok := w.contentStatusOf(obj); ok {
					c.observeLocked(s, false, false)
				}
			}
		}
	}
	return c
}

// cutWait is one backup waiting for its snapshots to be cut.
type cutWait struct {
	w         *cutWatch
	namespace string
	notify    chan struct{} // coalesced: "something changed, look again"
	vols      map[string]*volume
}

// volume is what is known of one snapshot, merged from the watch and from
// API answers in any order: a cut, readiness, an error and a deletion are
// sticky.
type volume struct {
	pvc         string
	uid         types.UID
	class       string
	cutAt       time.Time
	readyAt     time.Time
	restoreSize string
	errMsg      string
	deleted     bool
}

// cut is one snapshot as it was cut, and once ready, as it became ready.
type cut struct {
	Name        string
	PVC         string
	Class       string
	CutAt       time.Time
	ReadyAt     time.Time
	RestoreSize string
}

// stage is what a wait waits for.
type stage int

const (
	// stageCut: status.creationTime is set; the application may resume.
	stageCut stage = iota
	// stageReady: status.readyToUse is true; the snapshot can be restored.
	stageReady
)

func (st stage) String() string {
	if st == stageReady {
		return "ready"
	}
	return "cut"
}

// observe merges an API answer (create or get), which names the object the
// backup now owns.
func (c *cutWait) observe(obj any) {
	st, ok := c.w.statusOf(obj)
	if !ok {
		return
	}
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	c.observeLocked(st, false, true)
}

func (c *cutWait) observeLocked(s snapStatus, deleted, authoritative bool) {
	v := c.vols[s.name]
	if v == nil {
		return
	}
	if s.uid != "" && s.uid != v.uid {
		switch {
		case authoritative || v.uid == "":
			*v = volume{pvc: v.pvc, uid: s.uid}
		default:
			return // an event about an earlier object of the same name
		}
	}
	if deleted {
		v.deleted = true
	}
	if s.class != "" {
		v.class = s.class
	}
	if !s.cutAt.IsZero() && v.cutAt.IsZero() {
		v.cutAt = s.cutAt
	}
	if s.ready && v.readyAt.IsZero() {
		// The API records no time of readiness; when it is first seen is
		// the closest there is.
		v.readyAt = time.Now()
		v.restoreSize = s.restoreSize
	}
	if s.errMsg != "" && v.errMsg == "" {
		v.errMsg = s.errMsg
	}
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// until waits until every snapshot has reached stage and returns them by
// name. It fails at once when a snapshot reports an error or disappears,
// with timeoutErr at deadline, and with ctx's error when ctx ends.
func (c *cutWait) until(ctx context.Context, st stage, deadline time.Time, timeoutErr error, why string) (map[string]cut, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		cuts, pending, err := c.check(st)
		if err != nil || len(pending) == 0 {
			return cuts, err
		}
		select {
		case <-c.notify:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for snapshot %s: %w", st, ctx.Err())
		case <-timer.C:
			return nil, fmt.Errorf("%w %s: %s", timeoutErr, why, strings.Join(pending, ", "))
		}
	}
}

func (c *cutWait) check(st stage) (map[string]cut, []string, error) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	cuts := map[string]cut{}
	var pending []string
	for name, v := range c.vols {
		switch {
		case v.errMsg != "":
			return nil, nil, &SnapshotError{Namespace: c.namespace, Name: name, PVC: v.pvc, Message: v.errMsg}
		case v.deleted:
			return nil, nil, &SnapshotError{Namespace: c.namespace, Name: name, PVC: v.pvc, Message: "deleted before it was " + st.String()}
		case v.cutAt.IsZero() || (st == stageReady && v.readyAt.IsZero()):
			pending = append(pending, fmt.Sprintf("%s/%s (pvc %s)", c.namespace, name, v.pvc))
		default:
			cuts[name] = cut{Name: name, PVC: v.pvc, Class: v.class, CutAt: v.cutAt, ReadyAt: v.readyAt, RestoreSize: v.restoreSize}
		}
	}
	sort.Strings(pending)
	return cuts, pending, nil
}

// stop unregisters the wait.
func (c *cutWait) stop() {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	for name := range c.vols {
		key := c.namespace + "/" + name
		delete(c.w.waits[key], c)
		if len(c.w.waits[key]) == 0 {
			delete(c.w.waits, key)
		}
	}
}
