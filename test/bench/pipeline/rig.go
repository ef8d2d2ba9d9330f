package pipeline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	dynfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/pkg/workload"
	"github.com/freezeframe/freezeframe/services/hooker/blueprint/blueprinttest"
	"github.com/freezeframe/freezeframe/services/hooker/freeze"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
	"github.com/freezeframe/freezeframe/services/hooker/podexec/podexectest"
	"github.com/freezeframe/freezeframe/services/scheduler/schedule"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot/snapshottest"
)

// Cluster is the cluster name the rig's services run for.
const Cluster = "bench"

// KeepEvery is how often, with n backups frozen at once, each freeze lease
// is renewed and each snapshot's progress reported to the watchdogs: every
// second (the services' defaults) up to 1,000 at once, every 5 s beyond.
// Both are a key-value write per frozen backup; at 1 s, 10,000 frozen at
// once are 20,000 writes a second, which the one embedded NATS server on 2
// shared cores did not sustain: renewals timed out and most freezes
// resumed early ("cannot reach NATS to keep the freeze"). Leases go stale
// after ten renewals missed, as by default.
func KeepEvery(n int) time.Duration {
	if n > 1000 {
		return 5 * time.Second
	}
	return time.Second
}

// Rig is a running pipeline.
type Rig struct {
	Client    *events.Client
	Exec      *podexectest.Recorder
	Cuts      *snapshottest.Controller
	Workloads []events.Workload

	leases *lease.Store
	// fakes are the stand-in clusters, whose call logs ForgetCalls empties.
	fakes     []interface{ ClearActions() }
	mu        sync.Mutex
	requested map[string]time.Time // backup id -> BackupRequested's time
	ended     chan Outcome
}

// Outcome is one backup's terminal event as the rig's observer saw it.
type Outcome struct {
	BackupID  string
	Workload  events.Workload
	Kind      events.Kind
	Succeeded bool
	// Requested is the BackupRequested event's time (stamped by the
	// scheduler before publishing); Ended is when the observer received
	// the terminal event.
	Requested, Ended time.Time
}

// Options configure a rig.
type Options struct {
	// Workloads is how many Deployments there are, each in its namespace.
	Workloads int
	// CutsAtOnce is how many backups the snapshotter cuts at once (its
	// Concurrency); default the number of workloads, at least the
	// production default of 1,024 per replica, so that with every cut held
	// (see snapshottest.Controller.Hold) every backup is in flight at once
	// instead of the rest waiting in the stream. (Set to exactly 1,000 for
	// 1,000 workloads, the live heap per backup in flight measured 3-4 KiB
	// more than with 1,024, for reasons not looked into.)
	CutsAtOnce int
	// Log is the services' logger; by default JSON to io.Discard, so that
	// they pay for formatting records as in production but not for writing.
	Log *slog.Logger
}

// Start runs the services and returns once the scheduler answers.
// Everything stops when tb ends.
func Start(tb testing.TB, o Options) *Rig {
	tb.Helper()
	srv := eventstest.NewServer(tb)
	nc, js := srv.JetStream()
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	n := o.Workloads
	common := service.Common{Cluster: Cluster, ShutdownTimeout: 5 * time.Second}
	common.NATS.Stream = events.DefaultStream

	keepEvery := KeepEvery(n)
	var objs []k8sruntime.Object
	var pods []*corev1.Pod
	r := &Rig{requested: map[string]time.Time{}, ended: make(chan Outcome, n+1024)}
	for i := range n {
		ns := fmt.Sprintf("bench-%04d", i)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: ns, Labels: map[string]string{"app": "db"}},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "redis", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
				Volumes:    []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
			},
			Status: corev1.PodStatus{Phase: corev1.PodRunning},
		}
		pods = append(pods, pod)
		objs = append(objs,
			&appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns, Annotations: map[string]string{workload.AnnotationKanisterBlueprint: "redis-hooks"}},
				Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}},
			},
			pod)
		objs = append(objs, snapshottest.Claims(ns, "data")...)
		r.Workloads = append(r.Workloads, events.Workload{Cluster: Cluster, Namespace: ns, Kind: "deployment", Name: "db"})
	}
	kube := kubefake.NewClientset(append(objs, snapshottest.StorageClasses()...)...)
	indexPodLists(kube, pods)
	dyn := dynfake.NewSimpleDynamicClient(k8sruntime.NewScheme(), blueprinttest.RedisPause())
	snaps := snapfake.NewSimpleClientset(snapshottest.Classes()...)
	deepWatches(snaps)

	ctx, cancel := context.WithCancel(context.Background())
	r.Exec = &podexectest.Recorder{}
	// Installed after deepWatches, so it sees each create first.
	r.Cuts = snapshottest.NewController(tb, snaps, snapshottest.ControllerOptions{ReadyAtCut: true})
	r.fakes = append(r.fakes, kube, snaps, dyn)

	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil && ctx.Err() == nil {
				tb.Errorf("%s: %v", name, err)
			}
		})
	}
	sched := schedule.New(schedule.Config{Common: common}, schedule.NewKubeWorkloads(kube), events.NewPublisher(js, events.RoleScheduler.Source()), log)
	run("scheduler", func(ctx context.Context) error { return sched.Run(ctx, nc) })
	leases, err := lease.Open(ctx, js, lease.Config{RenewEvery: keepEvery, StaleAfter: 10 * keepEvery})
	if err != nil {
		tb.Fatal(err)
	}
	r.leases = leases
	// Freeze admission is off: the rig measures the services' own cost with
	// every backup in flight at once (liveInFlight holds every cut), over a
	// stand-in storage that cuts at once; the gate is measured on the
	// sandbox, against a storage that queues.
	hooker := freeze.New(freeze.Config{Common: common, Replica: "hooker-0", AdmissionDisabled: true}, freeze.Deps{
		Leases:     leases,
		Workloads:  workload.NewResolver(kube),
		Blueprints: freeze.NewKubeBlueprints(dyn, false, "kanister"),
		Objects:    freeze.NewKubeObjects(kube),
		Pods:       freeze.NewKubeObjects(kube),
		Exec:       r.Exec,
		Publisher:  events.NewPublisher(js, events.RoleHooker.Source()),
		Lookup:     events.NewStreamHistory(js, "").Lookup,
	}, log)
	run("hooker", func(ctx context.Context) error { return hooker.Run(ctx, js) })
	cutsAtOnce := o.CutsAtOnce
	if cutsAtOnce <= 0 {
		cutsAtOnce = max(n, 1024)
	}
	// A held cut waits until every backup is frozen (see Controller.Hold):
	// 10,000 take a while to get there on 2 cores.
	cutTimeout := time.Minute + time.Duration(n)*10*time.Millisecond
	snapper := snapshot.New(snapshot.Config{Common: common, CutTimeout: cutTimeout, Concurrency: cutsAtOnce, ProgressEvery: keepEvery},
		snapshot.Deps{Workloads: workload.NewResolver(kube), Snapshots: snaps, Kube: kube}, events.NewPublisher(js, events.RoleSnapshotter.Source()), log)
	run("snapshotter", func(ctx context.Context) error { return snapper.Run(ctx, js) })

	if err := r.observe(ctx, js); err != nil {
		cancel()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cancel(); wg.Wait() })

	client, err := events.NewClient(nc)
	if err != nil {
		tb.Fatal(err)
	}
	r.Client = client
	if err := waitForScheduler(nc); err != nil {
		tb.Fatal(err)
	}
	return r
}

// ForgetCalls empties the stand-in clusters' logs of every API call: the
// fake clientsets record each one, which no real cluster keeps in the
// services' memory.
func (r *Rig) ForgetCalls() {
	for _, f := range r.fakes {
		f.ClearActions()
	}
}

// observe follows the Requested and terminal events of every backup through
// one ordered consumer (not one per backup, as Client.Wait would).
func (r *Rig) observe(ctx context.Context, js jetstream.JetStream) error {
	subjects, err := events.Filter{Kinds: []events.Kind{events.KindRequested, events.KindResumed, events.KindFailed}}.Subjects()
	if err != nil {
		return err
	}
	cons, err := js.OrderedConsumer(ctx, events.DefaultStream, jetstream.OrderedConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return fmt.Errorf("observe: %w", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		now := time.Now()
		ev, err := events.Decode(msg.Headers(), msg.Data())
		if err != nil {
			return
		}
		id := ev.BackupID()
		if ev.Kind() == events.KindRequested {
			r.mu.Lock()
			r.requested[id] = ev.Time()
			r.mu.Unlock()
			return
		}
		if !events.IsTerminal(ev) {
			return
		}
		r.mu.Lock()
		req, ok := r.requested[id]
		delete(r.requested, id)
		r.mu.Unlock()
		if !ok {
			return // refused before it was requested, e.g. the readiness probe
		}
		r.ended <- Outcome{BackupID: id, Workload: ev.Workload(), Kind: ev.Kind(), Succeeded: events.Succeeded(ev), Requested: req, Ended: now}
	})
	if err != nil {
		return fmt.Errorf("observe: %w", err)
	}
	context.AfterFunc(ctx, cc.Stop)
	return nil
}

// Backup asks the scheduler for a backup of w and returns its id.
// Released reports whether every freeze lease is gone: the lease is
// released just after Resumed, so a round that asks again before it would
// wait for the previous round's backups.
func (r *Rig) Released(ctx context.Context) bool {
	held, err := r.leases.List(ctx)
	return err == nil && len(held) == 0
}

func (r *Rig) Backup(ctx context.Context, w events.Workload) (string, error) {
	return r.Client.RequestBackup(ctx, events.BackupRequested{BackupRef: events.BackupRef{Workload: w}, RequestedBy: "bench"})
}

// Next returns the next backup to end.
func (r *Rig) Next(ctx context.Context) (Outcome, error) {
	select {
	case o := <-r.ended:
		return o, nil
	case <-ctx.Done():
		return Outcome{}, fmt.Errorf("wait for a backup to end: %w", ctx.Err())
	}
}

// FreezeOverhead is how long the workload in namespace stayed frozen in its
// latest backup beyond the snapshot's own time, and that snapshot time.
func (r *Rig) FreezeOverhead(namespace string) (overhead, frozen, cut time.Duration, err error) {
	// The stand-in execs are instant: the pre-hook ends as it starts.
	pre, okPre := r.Exec.Last(namespace, "CLIENT PAUSE")
	post, okPost := r.Exec.Last(namespace, "CLIENT UNPAUSE")
	created, cutAt := r.Cuts.Took(namespace)
	if !okPre || !okPost || created.IsZero() || cutAt.IsZero() {
		return 0, 0, 0, fmt.Errorf("%s: hooks or snapshot not seen", namespace)
	}
	frozen, cut = post.At.Sub(pre.At), cutAt.Sub(created)
	return frozen - cut, frozen, cut, nil
}

func waitForScheduler(nc *nats.Conn) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := nc.Request(events.APISubject(Cluster), []byte("{}"), time.Second)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("scheduler never answered: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
