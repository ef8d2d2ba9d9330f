package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
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
	"github.com/freezeframe/freezeframe/services/notifier/notify"
	"github.com/freezeframe/freezeframe/services/scheduler/schedule"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot/snapshottest"
)

// The four services run together here against one embedded JetStream and
// fake Kubernetes clientsets; only exec into pods and the CSI snapshot
// controller are stood in for (the sandbox suite runs the real ones).

type recordingNotifier struct {
	mu  sync.Mutex
	got []events.Event
}

func (n *recordingNotifier) Notify(_ context.Context, ev events.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got = append(n.got, ev)
	return nil
}

func (n *recordingNotifier) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.got)
}

type pipeline struct {
	natsURL  string
	js       jetstream.JetStream
	client   *events.Client
	exec     *podexectest.Recorder
	snaps    *snapfake.Clientset
	kube     *kubefake.Clientset
	notified *recordingNotifier
}

func startPipeline(t *testing.T, snapshotFailure string) *pipeline {
	t.Helper()
	srv := eventstest.NewServer(t)
	nc, js := srv.JetStream()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	common := service.Common{Cluster: "dev", ShutdownTimeout: 5 * time.Second}
	common.NATS.Stream = events.DefaultStream

	kube := redisCluster(t)
	snaps := snapfake.NewSimpleClientset(snapshottest.Classes()...)
	ex := &podexectest.Recorder{Code: 7, Stderr: "ERR"}
	notified := &recordingNotifier{}
	cuts := snapshottest.ControllerOptions{ReadyAtCut: true}
	if snapshotFailure != "" {
		cuts.Fail = map[string]string{"redis-data": snapshotFailure}
	}
	snapshottest.NewController(t, snaps, cuts)

	group := newServiceGroup(t)
	run := group.run
	sched := schedule.New(schedule.Config{Common: common}, schedule.NewKubeWorkloads(kube), events.NewPublisher(js, events.RoleScheduler.Source()), log)
	run("scheduler", func(ctx context.Context) error { return sched.Run(ctx, nc) })
	hooker := newHooker(t, common, js, kube, ex, log)
	run("hooker", func(ctx context.Context) error { return hooker.Run(ctx, js) })
	snapper := snapshot.New(snapshot.Config{Common: common, CutTimeout: 10 * time.Second},
		snapshot.Deps{Workloads: workload.NewResolver(kube), Snapshots: snaps, Kube: kube}, events.NewPublisher(js, events.RoleSnapshotter.Source()), log)
	run("snapshotter", func(ctx context.Context) error { return snapper.Run(ctx, js) })
	notifier := notify.New(notify.Config{Common: common}, notified, log)
	run("notifier", func(ctx context.Context) error { return notifier.Run(ctx, js) })

	client, err := events.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	waitForResponder(t, nc)
	return &pipeline{natsURL: srv.ClientURL(), js: js, client: client, exec: ex, snaps: snaps, kube: kube, notified: notified}
}

// redisCluster is the fake cluster the rigs run on: the redis Deployment bound to the
// redis-hooks blueprint, its running pod redis-0 mounting redis-data, and that claim bound
// on a CSI storage class with a default snapshot class.
func redisCluster(t *testing.T) *kubefake.Clientset {
	t.Helper()
	objs := []runtime.Object{
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "redis", Namespace: "shop", Annotations: map[string]string{workload.AnnotationKanisterBlueprint: "redis-hooks"}},
			Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "redis"}}},
		},
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "redis-0", Namespace: "shop", Labels: map[string]string{"app": "redis"}},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "redis", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
				Volumes:    []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "redis-data"}}}},
			},
			Status: corev1.PodStatus{Phase: corev1.PodRunning},
		},
	}
	objs = append(objs, snapshottest.StorageClasses()...)
	return kubefake.NewClientset(append(objs, snapshottest.Claims("shop", "redis-data")...)...)
}

// newHooker is a hooker replica "hooker-0" on js, over kube and the redis-hooks
// blueprint, running hooks through ex.
func newHooker(t *testing.T, common service.Common, js jetstream.JetStream, kube *kubefake.Clientset, ex *podexectest.Recorder, log *slog.Logger) *freeze.Service {
	t.Helper()
	leases, err := lease.Open(t.Context(), js, lease.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynfake.NewSimpleDynamicClient(runtime.NewScheme(), blueprinttest.RedisPause())
	return freeze.New(freeze.Config{Common: common, Replica: "hooker-0"}, freeze.Deps{
		Leases:     leases,
		Workloads:  workload.NewResolver(kube),
		Blueprints: freeze.NewKubeBlueprints(dyn, false, "kanister"),
		Objects:    freeze.NewKubeObjects(kube),
		Pods:       freeze.NewKubeObjects(kube),
		Policies:   freeze.NewKubePolicies(dyn),
		Exec:       ex,
		Publisher:  events.NewPublisher(js, events.RoleHooker.Source()),
		Lookup:     events.NewStreamHistory(js, "").Lookup,
	}, log)
}

func waitForResponder(t *testing.T, nc *nats.Conn) {
	eventstest.Eventually(t, 5*time.Second, "scheduler answering", func() bool {
		_, err := nc.Request(events.APISubject("dev"), []byte("{}"), time.Second)
		return err == nil
	})
}

func (p *pipeline) backup(t *testing.T) (string, []events.Event) {
	t.Helper()
	id, err := p.client.RequestBackup(t.Context(), events.BackupRequested{BackupRef: events.BackupRef{Workload: events.Workload{Cluster: "dev", Namespace: "shop", Kind: "deployment", Name: "redis"}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var seen []events.Event
	if _, err := p.client.WaitReady(ctx, id, func(ev events.Event) { seen = append(seen, ev) }); err != nil {
		t.Fatalf("backup %s did not end: %v (events %v)", id, err, kindsOf(seen))
	}
	return id, seen
}

func kindsOf(evs []events.Event) []events.Kind {
	out := make([]events.Kind, len(evs))
	for i, e := range evs {
		out[i] = e.Kind()
	}
	return out
}

func assertKinds(t *testing.T, got []events.Event, want ...events.Kind) {
	t.Helper()
	k := kindsOf(got)
	if len(k) != len(want) {
		t.Fatalf("events %v, want %v", k, want)
	}
	for i := range want {
		if k[i] != want[i] {
			t.Fatalf("events %v, want %v", k, want)
		}
	}
}

func waitNotified(t *testing.T, n *recordingNotifier, want int) {
	t.Helper()
	eventstest.Eventually(t, 5*time.Second, "notifier saw the terminal events", func() bool { return n.count() >= want })
}

func TestPipelineHappyPath(t *testing.T) {
	p := startPipeline(t, "")
	id, seen := p.backup(t)
	// The resume and the readiness follow the cut in either order.
	if len(seen) == 5 && seen[3].Kind() == events.KindSnapshotReady {
		seen[3], seen[4] = seen[4], seen[3]
	}
	assertKinds(t, seen, events.KindRequested, events.KindQuiesced, events.KindSnapshotted, events.KindResumed, events.KindSnapshotReady)
	for _, ev := range seen {
		if ev.BackupID() != id {
			t.Fatalf("event %s carries backup id %s, want %s", ev.Kind(), ev.BackupID(), id)
		}
	}
	snap := seen[2].Payload.(*events.Snapshotted)
	if len(snap.Snapshots) != 1 || snap.Snapshots[0].PVC != "redis-data" {
		t.Errorf("snapshots %+v", snap.Snapshots)
	}
	if r := seen[3].Payload.(*events.Resumed); !r.Succeeded || r.FrozenFor <= 0 {
		t.Errorf("resumed %+v", r)
	}
	if cmds := p.exec.Commands(); len(cmds) != 2 || cmds[0] != "redis-0/redis: redis-cli CLIENT PAUSE 60000 WRITE" || cmds[1] != "redis-0/redis: redis-cli CLIENT UNPAUSE" {
		t.Errorf("hooks ran %q", cmds)
	}
	waitNotified(t, p.notified, 1)
}

func TestPipelinePrehookFailureTakesNoSnapshot(t *testing.T) {
	p := startPipeline(t, "")
	p.exec.Fail("CLIENT PAUSE", 0)
	_, seen := p.backup(t)
	assertKinds(t, seen, events.KindRequested, events.KindFailed, events.KindResumed)
	if f := seen[1].Payload.(*events.BackupFailed); f.Step != events.StepQuiesce || !strings.Contains(f.Reason, "status 7") {
		t.Errorf("failure %+v", f)
	}
	list, err := p.snaps.SnapshotV1().VolumeSnapshots("").List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Fatalf("%d snapshots taken after a failed pre-hook", len(list.Items))
	}
	if r := seen[2].Payload.(*events.Resumed); r.Succeeded {
		t.Errorf("resumed %+v", r)
	}
	waitNotified(t, p.notified, 1)
}

func TestPipelineSnapshotFailureStillResumes(t *testing.T) {
	p := startPipeline(t, "driver refused: quota exceeded")
	_, seen := p.backup(t)
	assertKinds(t, seen, events.KindRequested, events.KindQuiesced, events.KindFailed, events.KindResumed)
	f := seen[2].Payload.(*events.BackupFailed)
	if f.Step != events.StepSnapshot || !f.ResumePending || !strings.Contains(f.Reason, "quota exceeded") {
		t.Errorf("failure %+v", f)
	}
	if r := seen[3].Payload.(*events.Resumed); r.Succeeded || r.Reason != events.ResumeAfterFailure {
		t.Errorf("resumed %+v", r)
	}
	if cmds := p.exec.Commands(); len(cmds) != 2 || !strings.Contains(cmds[1], "UNPAUSE") {
		t.Errorf("post-hook did not run after the snapshot failed: %q", cmds)
	}
	waitNotified(t, p.notified, 1)
}

func TestPipelineMissingWorkloadIsRefusedWithAnEvent(t *testing.T) {
	p := startPipeline(t, "")
	id := events.NewBackupID()
	_, err := p.client.RequestBackup(t.Context(), events.BackupRequested{BackupRef: events.BackupRef{BackupID: id, Workload: events.Workload{Cluster: "dev", Namespace: "shop", Kind: "Deployment", Name: "ghost"}}})
	if err == nil || !strings.Contains(err.Error(), "ghost") {
		t.Fatalf("request for a missing workload: err %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	last, err := p.client.Wait(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := last.Payload.(*events.BackupFailed); !ok || f.Step != events.StepRequest {
		t.Fatalf("terminal event %s %+v", last.Kind(), last.Payload)
	}
	if len(p.exec.Commands()) != 0 {
		t.Fatal("hooks ran for a refused request")
	}
}

// serviceGroup runs in-process services until stop or the end of the test;
// one that returns an error before then fails the test.
type serviceGroup struct {
	t      *testing.T
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

func newServiceGroup(t *testing.T) *serviceGroup {
	g := &serviceGroup{t: t}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	t.Cleanup(g.stop)
	return g
}

// run starts f, named for the failure message.
func (g *serviceGroup) run(name string, f func(context.Context) error) {
	g.wg.Go(func() {
		if err := f(g.ctx); err != nil && g.ctx.Err() == nil {
			g.t.Errorf("%s: %v", name, err)
		}
	})
}

// stop ends every service and waits for them.
func (g *serviceGroup) stop() {
	g.once.Do(func() {
		g.cancel()
		g.wg.Wait()
	})
}
