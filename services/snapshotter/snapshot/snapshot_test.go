package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/workload"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot/snapshottest"
)

const (
	namespace = "shop"
	timeout   = 10 * time.Second
)

var db = events.Workload{Cluster: "test", Namespace: namespace, Kind: events.KindDeployment, Name: "db"}

// cutTime is what the stand-in controller reports as status.creationTime;
// the API keeps seconds, so the test does too.
var cutTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// env is one snapshotter against an embedded JetStream and fake clusters.
type env struct {
	// epochs are the freezes quiesce recorded, by backup id.
	epochs map[string]uint64
	t      *testing.T
	js     jetstream.JetStream
	client *events.Client
	hooker *events.Publisher
	kube   *kubefake.Clientset
	snaps  *snapfake.Clientset
	ctrl   *snapshottest.Controller
}

type options struct {
	cfg     snapshot.Config
	objects []runtime.Object
	// storage are the cluster's claims, storage classes and snapshot
	// classes; nil: defaultStorage().
	storage *storage
	// ctrl is how the stand-in snapshot controller answers; snapshots are
	// cut at cutTime.
	ctrl snapshottest.ControllerOptions
	// reactors run before the fake's object tracker, to inject API errors.
	reactors []k8stesting.ReactionFunc
	// kubeReactors run before the core fake's tracker (verb, resource and
	// reaction), added before the service starts: adding one to a running
	// fake races with its informers.
	kubeReactors []kubeReactor
}

type kubeReactor struct {
	verb, resource string
	react          k8stesting.ReactionFunc
}

func start(t *testing.T, o options) *env {
	t.Helper()
	srv := eventstest.NewServer(t)
	nc, js := srv.JetStream()
	client, err := events.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	st := o.storage
	if st == nil {
		st = defaultStorage()
	}
	e := &env{
		t: t, js: js, client: client,
		hooker: events.NewPublisher(js, events.RoleHooker.Source()),
		kube:   kubefake.NewClientset(append(st.kube(), o.objects...)...),
		// The snapshot client generates no apply configurations, so it has
		// no NewClientset; the simple one is all there is.
		snaps: snapfake.NewSimpleClientset(st.classes...),
	}
	for _, r := range o.reactors {
		e.snaps.PrependReactor("*", "volumesnapshots", r)
	}
	for _, r := range o.kubeReactors {
		e.kube.PrependReactor(r.verb, r.resource, r.react)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	if o.ctrl.CutTime.IsZero() {
		o.ctrl.CutTime = cutTime
	}
	e.ctrl = snapshottest.NewController(t, e.snaps, o.ctrl)
	// The hooker ends each freeze once resumed; retention reads those ends.
	eventstest.StandInHooker(ctx, t, client, js)

	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := snapshot.New(o.cfg, snapshot.Deps{Workloads: workload.NewResolver(e.kube), Snapshots: e.snaps, Kube: e.kube}, events.NewPublisher(js, events.RoleSnapshotter.Source()), log)
	wg.Go(func() {
		if err := svc.Run(ctx, js); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("run: %v", err)
		}
	})
	return e
}

// quiesce publishes a Quiesced for backupID, as the hooker would.
func (e *env) quiesce(backupID string, mod func(*events.Quiesced), opts ...events.EventOption) {
	e.t.Helper()
	q := &events.Quiesced{
		BackupRef:      events.BackupRef{BackupID: backupID, Workload: db},
		QuiescedAt:     time.Now(),
		FreezeDeadline: time.Now().Add(time.Minute),
		Blueprint:      "db-hooks",
	}
	if mod != nil {
		mod(q)
	}
	if q.FreezeEpoch == 0 {
		// Frozen, as the hooker records it before it publishes Quiesced; a
		// copy of an earlier Quiesced carries that freeze's epoch.
		if e.epochs == nil {
			e.epochs = map[string]uint64{}
		}
		if _, ok := e.epochs[backupID]; !ok {
			e.epochs[backupID] = eventstest.Freeze(e.t, e.js, q.BackupRef)
		}
		q.FreezeEpoch = e.epochs[backupID]
	}
	if _, _, err := e.hooker.Publish(e.t.Context(), q, opts...); err != nil {
		e.t.Fatal(err)
	}
}

// outcome waits for the snapshotter's answer to backupID.
func (e *env) outcome(backupID string) events.Event {
	e.t.Helper()
	col := eventstest.Collect(e.t.Context(), e.t, e.client, events.Filter{BackupID: backupID})
	got := col.Until(timeout, func(ev events.Event) bool {
		return ev.Kind() == events.KindSnapshotted || ev.Kind() == events.KindFailed
	})
	return got[len(got)-1]
}

// settled waits until the consumer has handled every Quiesced published so
// far: whatever the handlers publish is on the stream by then.
func (e *env) settled() {
	e.t.Helper()
	quiesced := uint64(e.countAll(events.KindQuiesced))
	poll(e.t, "consumer settled every quiesced", func() bool {
		cons, err := e.js.Consumer(e.t.Context(), events.DefaultStream, snapshot.Durable)
		if err != nil {
			return false
		}
		ci, err := cons.Info(e.t.Context())
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0 && ci.Delivered.Consumer >= quiesced
	})
}

// count is how many events of kind the stream holds for backupID.
func (e *env) count(kind events.Kind, backupID string) int {
	e.t.Helper()
	return e.countFiltered(events.Filter{Kinds: []events.Kind{kind}, BackupID: backupID})
}

// countAll is how many events of kind the stream holds.
func (e *env) countAll(kind events.Kind) int {
	e.t.Helper()
	return e.countFiltered(events.Filter{Kinds: []events.Kind{kind}})
}

func (e *env) countFiltered(f events.Filter) int {
	e.t.Helper()
	return len(eventstest.Stored(e.t, e.js, f))
}

func (e *env) snapshots() []snapv1.VolumeSnapshot {
	e.t.Helper()
	l, err := e.snaps.SnapshotV1().VolumeSnapshots(namespace).List(e.t.Context(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return l.Items
}

func (e *env) creates() int {
	n := 0
	for _, a := range e.snaps.Actions() {
		if a.GetVerb() == "create" && a.GetResource().Resource == "volumesnapshots" {
			n++
		}
	}
	return n
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventstest.Eventually(t, timeout, what, cond)
}

// Cluster objects.

func deployment(name string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
		},
	}
}

func pod(name, app string, phase corev1.PodPhase, claims ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app": app}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main"}}},
		Status:     corev1.PodStatus{Phase: phase},
	}
	for i, c := range claims {
		vol := fmt.Sprintf("vol%d", i)
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c},
		}})
		p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: vol, MountPath: "/" + c})
	}
	return p
}

// twoClaims is the db Deployment with two running pods that mount "data"
// (both) and "wal", and a pending pod whose claim must be ignored.
func twoClaims() []runtime.Object {
	return []runtime.Object{
		deployment("db"),
		pod("db-a", "db", corev1.PodRunning, "data"),
		pod("db-b", "db", corev1.PodRunning, "data", "wal"),
		pod("db-c", "db", corev1.PodPending, "scratch"),
		pod("other", "web", corev1.PodRunning, "web-cache"),
	}
}

func TestSnapshotted(t *testing.T) {
	e := start(t, options{objects: twoClaims()})
	e.quiesce("bk-happy", func(q *events.Quiesced) { q.SnapshotClass = "csi-fast" })

	ev := e.outcome("bk-happy")
	s, ok := ev.Payload.(*events.Snapshotted)
	if !ok {
		t.Fatalf("got %s %+v, want snapshotted", ev.Kind(), ev.Payload)
	}
	// Snapshotted came at the cut: the controller has not made anything ready yet.
	for _, vs := range e.snapshots() {
		if r := vs.Status.ReadyToUse; r == nil || *r {
			t.Errorf("%s: readyToUse %v when Snapshotted arrived, want false", vs.Name, r)
		}
	}
	if s.Mode != events.SnapshotModeVolume || s.CutDuration <= 0 || s.BackupID != "bk-happy" || s.Workload != db {
		t.Errorf("snapshotted = %+v", s)
	}
	want := []events.Snapshot{
		{Name: snapshot.SnapshotName("bk-happy", "data"), Namespace: namespace, PVC: "data", Class: "csi-fast", CutAt: cutTime},
		{Name: snapshot.SnapshotName("bk-happy", "wal"), Namespace: namespace, PVC: "wal", Class: "csi-fast", CutAt: cutTime},
	}
	if len(s.Snapshots) != len(want) {
		t.Fatalf("snapshots = %+v, want %+v", s.Snapshots, want)
	}
	for i := range want {
		g := s.Snapshots[i]
		if g.Name != want[i].Name || g.Namespace != want[i].Namespace || g.PVC != want[i].PVC || g.Class != want[i].Class || !g.CutAt.Equal(want[i].CutAt) {
			t.Errorf("snapshots[%d] = %+v, want %+v", i, g, want[i])
		}
	}

	objs := e.snapshots()
	if len(objs) != 2 {
		t.Fatalf("%d volumesnapshots, want 2", len(objs))
	}
	for _, vs := range objs {
		wantLabels := map[string]string{
			snapshot.LabelBackupID:     "bk-happy",
			snapshot.LabelWorkloadKind: "Deployment",
			snapshot.LabelWorkloadName: "db",
		}
		for k, v := range wantLabels {
			if vs.Labels[k] != v {
				t.Errorf("%s: label %s = %q, want %q", vs.Name, k, vs.Labels[k], v)
			}
		}
		if c := vs.Spec.VolumeSnapshotClassName; c == nil || *c != "csi-fast" {
			t.Errorf("%s: class %v, want csi-fast", vs.Name, c)
		}
		if p := vs.Spec.Source.PersistentVolumeClaimName; p == nil || vs.Name != snapshot.SnapshotName("bk-happy", *p) {
			t.Errorf("%s: source %v does not match its name", vs.Name, p)
		}
	}

	// Readiness comes later and changes nothing for the backup.
	if err := e.ctrl.MarkReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	poll(t, "snapshots ready", func() bool {
		for _, vs := range e.snapshots() {
			if r := vs.Status.ReadyToUse; r == nil || !*r {
				return false
			}
		}
		return true
	})
	e.settled()
	if n := e.count(events.KindFailed, "bk-happy"); n != 0 {
		t.Errorf("%d BackupFailed, want none", n)
	}
}

func TestSnapshotClass(t *testing.T) {
	tests := []struct {
		name          string
		quiesced      string // Quiesced.SnapshotClass: the request's or the workload's annotation
		configDefault string
		want          string
	}{
		{name: "quiesced wins", quiesced: "from-event", configDefault: "from-config", want: "from-event"},
		{name: "config default", configDefault: "from-config", want: "from-config"},
		{name: "the driver's default class", want: "csi-default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, options{
				objects: []runtime.Object{deployment("db"), pod("db-a", "db", corev1.PodRunning, "data")},
				cfg:     snapshot.Config{DefaultSnapshotClass: tt.configDefault},
			})
			e.quiesce("bk-class", func(q *events.Quiesced) { q.SnapshotClass = tt.quiesced })
			ev := e.outcome("bk-class")
			s, ok := ev.Payload.(*events.Snapshotted)
			if !ok {
				t.Fatalf("got %s %+v, want snapshotted", ev.Kind(), ev.Payload)
			}
			if got := s.Snapshots[0].Class; got != tt.want {
				t.Errorf("reported class %q, want %q", got, tt.want)
			}
			// The class is always explicit: the snapshot says what was used.
			if c := firstCreate(t, e.snaps).Spec.VolumeSnapshotClassName; c == nil || *c != tt.want {
				t.Errorf("created with class %v, want %q", c, tt.want)
			}
		})
	}
}

func firstCreate(t *testing.T, snaps *snapfake.Clientset) *snapv1.VolumeSnapshot {
	t.Helper()
	for _, a := range snaps.Actions() {
		if c, ok := a.(k8stesting.CreateAction); ok && a.GetResource().Resource == "volumesnapshots" {
			return c.GetObject().(*snapv1.VolumeSnapshot)
		}
	}
	t.Fatal("no volumesnapshot created")
	return nil
}

func TestDuplicateQuiescedCreatesNothingTwice(t *testing.T) {
	e := start(t, options{objects: twoClaims()})
	// The same Quiesced three times under different event ids, so the stream
	// keeps every copy: two at once, one after the backup was snapshotted.
	e.quiesce("bk-dup", nil)
	e.quiesce("bk-dup", nil, events.WithID("bk-dup.quiesced.copy1"))
	if ev := e.outcome("bk-dup"); ev.Kind() != events.KindSnapshotted {
		t.Fatalf("got %s %+v, want snapshotted", ev.Kind(), ev.Payload)
	}
	book := events.NewFreezeBook(e.js, "")
	poll(t, "the freeze of bk-dup ended", func() bool {
		return errors.Is(book.CheckFrozen(t.Context(), events.BackupRef{BackupID: "bk-dup", Workload: db}, 0), events.ErrNotFrozen)
	})
	e.quiesce("bk-dup", nil, events.WithID("bk-dup.quiesced.copy2"))
	e.settled()

	if n := len(e.snapshots()); n != 2 {
		t.Errorf("%d volumesnapshots, want 2", n)
	}
	if n := e.creates(); n != 4 {
		t.Errorf("%d create calls, want 4 (both copies during the freeze tried each claim, AlreadyExists reused; none after it ended)", n)
	}
	if n := e.count(events.KindSnapshotted, "bk-dup"); n != 1 {
		t.Errorf("%d Snapshotted, want 1", n)
	}
	if n := e.count(events.KindFailed, "bk-dup"); n != 0 {
		t.Errorf("%d BackupFailed, want 0", n)
	}
}

// unavailable fails the first n creates of volumesnapshots with a 503.
func unavailable(n int32) k8stesting.ReactionFunc {
	var calls atomic.Int32
	return func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetVerb() != "create" || calls.Add(1) > n {
			return false, nil, nil
		}
		return true, nil, apierrors.NewServiceUnavailable("apiserver restarting")
	}
}

func TestTransientErrorRedeliversAndReuses(t *testing.T) {
	// The first attempt creates one snapshot and fails on the other; the
	// redelivery finds the first and creates only the second.
	e := start(t, options{
		objects:  twoClaims(),
		cfg:      snapshot.Config{MaxDeliver: 3, RetryMaxDelay: 20 * time.Millisecond},
		reactors: []k8stesting.ReactionFunc{unavailable(1)},
	})
	e.quiesce("bk-retry", nil)
	ev := e.outcome("bk-retry")
	if s, ok := ev.Payload.(*events.Snapshotted); !ok || len(s.Snapshots) != 2 {
		t.Fatalf("got %s %+v, want snapshotted with 2 snapshots", ev.Kind(), ev.Payload)
	}
	e.settled()
	if n := len(e.snapshots()); n != 2 {
		t.Errorf("%d volumesnapshots, want 2", n)
	}
	if n := e.count(events.KindFailed, "bk-retry"); n != 0 {
		t.Errorf("%d BackupFailed, want 0", n)
	}
}

func TestFailures(t *testing.T) {
	tests := []struct {
		name       string
		objects    []runtime.Object
		cfg        snapshot.Config
		ctrl       snapshottest.ControllerOptions
		reactors   []k8stesting.ReactionFunc
		quiesced   func(*events.Quiesced)
		wantReason string
		wantCreate bool // whether any VolumeSnapshot was created
		// rejectedCreate: create calls were made but every one was refused.
		rejectedCreate bool
		storage        *storage
	}{
		{
			name:       "missing workload",
			objects:    []runtime.Object{pod("db-a", "db", corev1.PodRunning, "data")},
			wantReason: "not found",
		},
		{
			name:       "no running pods",
			objects:    []runtime.Object{deployment("db"), pod("db-a", "db", corev1.PodPending, "data")},
			wantReason: "no running pods",
		},
		{
			name:       "no PVCs",
			objects:    []runtime.Object{deployment("db"), pod("db-a", "db", corev1.PodRunning)},
			wantReason: "mount no PersistentVolumeClaim",
		},
		{
			name:       "snapshot error status",
			objects:    twoClaims(),
			ctrl:       snapshottest.ControllerOptions{Fail: map[string]string{"wal": "csi: backend refused snapshot"}},
			wantReason: "csi: backend refused snapshot",
			wantCreate: true,
		},
		{
			name:       "cut timeout",
			objects:    twoClaims(),
			cfg:        snapshot.Config{CutTimeout: 300 * time.Millisecond},
			ctrl:       snapshottest.ControllerOptions{NeverCut: map[string]bool{"wal": true}},
			wantReason: "snapshots not cut within 300ms: shop/" + snapshot.SnapshotName("bk-fail", "wal") + " (pvc wal)",
			wantCreate: true,
		},
		{
			name:       "freeze deadline passed",
			objects:    twoClaims(),
			quiesced:   func(q *events.Quiesced) { q.FreezeDeadline = time.Now().Add(-time.Second) },
			wantReason: "freeze deadline",
		},
		{
			name:    "RBAC denial",
			objects: twoClaims(),
			reactors: []k8stesting.ReactionFunc{func(a k8stesting.Action) (bool, runtime.Object, error) {
				if a.GetVerb() != "create" {
					return false, nil, nil
				}
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "snapshot.storage.k8s.io", Resource: "volumesnapshots"}, "", errors.New(`User "system:serviceaccount:ff:snapshotter" cannot create resource`))
			}},
			wantReason:     "forbidden",
			rejectedCreate: true,
		},
		{
			name:       "no snapshot class for the driver",
			objects:    twoClaims(),
			storage:    &storage{claims: defaultStorage().claims, storageClasses: defaultStorage().storageClasses, classes: []runtime.Object{snapshotClass("other-driver", "other.csi.example.com", true)}},
			wantReason: "no VolumeSnapshotClass for CSI driver " + driver,
		},
		{
			name:       "asked class is for another driver",
			objects:    twoClaims(),
			quiesced:   func(q *events.Quiesced) { q.SnapshotClass = "other-driver" },
			wantReason: "VolumeSnapshotClass other-driver is for CSI driver other.csi.example.com, not " + driver,
		},
		{
			name:       "asked class does not exist",
			objects:    twoClaims(),
			quiesced:   func(q *events.Quiesced) { q.SnapshotClass = "gold" },
			wantReason: "VolumeSnapshotClass gold not found",
		},
		{
			name:       "claim not bound",
			objects:    twoClaims(),
			storage:    pendingWal(),
			wantReason: "persistentvolumeclaim shop/wal is Pending, not Bound",
		},
		{
			name:       "claim missing",
			objects:    []runtime.Object{deployment("db"), pod("db-a", "db", corev1.PodRunning, "data", "gone")},
			wantReason: "persistentvolumeclaim shop/gone not found",
		},
		{
			name:           "transient errors until the last delivery",
			objects:        twoClaims(),
			cfg:            snapshot.Config{MaxDeliver: 2, RetryMaxDelay: 20 * time.Millisecond},
			reactors:       []k8stesting.ReactionFunc{unavailable(1 << 20)},
			wantReason:     "apiserver restarting",
			rejectedCreate: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, options{objects: tt.objects, cfg: tt.cfg, ctrl: tt.ctrl, reactors: tt.reactors, storage: tt.storage})
			e.quiesce("bk-fail", tt.quiesced)
			ev := e.outcome("bk-fail")
			f, ok := ev.Payload.(*events.BackupFailed)
			if !ok {
				t.Fatalf("got %s %+v, want failed", ev.Kind(), ev.Payload)
			}
			if f.Step != events.StepSnapshot || !f.ResumePending || f.BackupID != "bk-fail" || f.Workload != db {
				t.Errorf("failed = %+v, want step snapshot, resume pending, same backup", f)
			}
			if !strings.Contains(f.Reason, tt.wantReason) {
				t.Errorf("reason %q does not contain %q", f.Reason, tt.wantReason)
			}
			if got := e.creates() > 0 && !tt.rejectedCreate; got != tt.wantCreate {
				t.Errorf("volumesnapshots created: %v, want %v", got, tt.wantCreate)
			}
			// A snapshot that might still be cut after the resume would not
			// be consistent: the failed backup's snapshots are deleted.
			poll(t, "the failed backup's snapshots deleted", func() bool { return len(e.snapshots()) == 0 })
			e.settled()
			if n := e.count(events.KindSnapshotted, "bk-fail"); n != 0 {
				t.Errorf("%d Snapshotted after a failure, want 0", n)
			}
		})
	}
}

// The hooker lists the volumes it saw before freezing; the snapshotter uses
// them and asks the API nothing about the workload while it is frozen.
func TestVolumesFromQuiescedNeedNoLookup(t *testing.T) {
	e := start(t, options{}) // the workload is not in the (fake) cluster at all
	e.quiesce("bk-vols", func(q *events.Quiesced) { q.Volumes = []string{"data", "wal"} })
	ev := e.outcome("bk-vols")
	s, ok := ev.Payload.(*events.Snapshotted)
	if !ok {
		t.Fatalf("got %s %+v, want snapshotted", ev.Kind(), ev.Payload)
	}
	if len(s.Snapshots) != 2 || s.Snapshots[0].PVC != "data" || s.Snapshots[1].PVC != "wal" {
		t.Fatalf("snapshots %+v", s.Snapshots)
	}
	for _, a := range e.kube.Actions() {
		// The caches list and watch once at start; nothing else is asked.
		if v := a.GetVerb(); v != "list" && v != "watch" {
			t.Errorf("unexpected Kubernetes call while frozen: %s %s", v, a.GetResource().Resource)
		}
	}
}

func pendingWal() *storage {
	st := defaultStorage()
	for _, c := range st.claims {
		if c.Name == "wal" {
			c.Status.Phase = corev1.ClaimPending
		}
	}
	return st
}
