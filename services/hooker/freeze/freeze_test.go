package freeze

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	dynfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/workload"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
	"github.com/freezeframe/freezeframe/services/hooker/podexec/podexectest"
)

const password = "s3cr3t-Pa55"

func redisBlueprint(preFunc string) *unstructured.Unstructured {
	phase := func(name, cmd string) map[string]any {
		return map[string]any{
			"func": preFunc, "name": name,
			"objects": map[string]any{"redis": map[string]any{"kind": "Secret", "name": "redis-auth", "namespace": "{{ .Deployment.Namespace }}"}},
			"args": map[string]any{
				"namespace": "{{ .Deployment.Namespace }}",
				"pod":       "{{ index .Deployment.Pods 0 }}",
				"container": "redis",
				"command":   []any{"redis-cli", "-a", `{{ index .Phases.` + name + `.Secrets.redis.Data "password" | toString }}`, cmd},
			},
		}
	}
	post := phase("resumeWrites", "CLIENT UNPAUSE")
	post["func"] = "KubeExec"
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cr.kanister.io/v1alpha1", "kind": "Blueprint",
		"metadata": map[string]any{"name": "redis-hooks", "namespace": "kanister"},
		"actions": map[string]any{
			"backupPrehook":  map[string]any{"phases": []any{phase("pauseWrites", "CLIENT PAUSE 60000 WRITE")}},
			"backupPosthook": map[string]any{"phases": []any{post}},
		},
	}}
}

type fixture struct {
	client *events.Client
	js     jetstream.JetStream
	exec   *podexectest.Recorder
	svc    *Service
	logs   *strings.Builder
	logMu  *sync.Mutex
	start  func(t *testing.T, cfg Config, replica string) (*Service, context.CancelFunc)
}

// newFixture starts one hooker replica; objs are added to the cluster (see newEnv).
func newFixture(t *testing.T, cfg Config, bp *unstructured.Unstructured, annotations map[string]string, objs ...runtime.Object) *fixture {
	f := newEnv(t, bp, annotations, objs...)
	f.svc, _ = f.start(t, cfg, "hooker-0")
	return f
}

// newEnv makes the cluster and the server; start adds a hooker replica
// whose cancel func stops it as a crash would (no more lease renewals).
// objs are added to the cluster: custom resources (BackupPolicies, as
// unstructured objects) to those the hooker reads dynamically, the rest
// (pods) to the typed client.
func newEnv(t *testing.T, bp *unstructured.Unstructured, annotations map[string]string, objs ...runtime.Object) *fixture {
	t.Helper()
	srv := eventstest.NewServer(t)
	nc, js := srv.JetStream()
	var kubeObjs, dynObjs []runtime.Object
	for _, o := range objs {
		if _, ok := o.(*unstructured.Unstructured); ok {
			dynObjs = append(dynObjs, o)
		} else {
			kubeObjs = append(kubeObjs, o)
		}
	}
	kube := kubefake.NewClientset(append([]runtime.Object{
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "redis", Namespace: "shop", Annotations: annotations, Labels: map[string]string{"app": "redis"}},
			Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "redis"}}},
		},
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "redis-7d9f", Namespace: "shop", Labels: map[string]string{"app": "redis"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "redis"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning},
		},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "redis-auth", Namespace: "shop"}, Data: map[string][]byte{"password": []byte(password)}},
		// A second workload with the same blueprint, for backups that share an id.
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: "shop", Annotations: annotations},
			Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "cache"}}},
		},
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "cache-5b2c", Namespace: "shop", Labels: map[string]string{"app": "cache"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "redis"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning},
		},
	}, kubeObjs...)...)
	if bp != nil {
		dynObjs = append(dynObjs, bp)
	}
	dyn := dynfake.NewSimpleDynamicClient(runtime.NewScheme(), dynObjs...)
	logs := &strings.Builder{}
	var logMu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&logMu, logs}, nil))
	// A failed hook prints the password, which no message may repeat.
	ex := &podexectest.Recorder{Stderr: "auth failed for password " + password}
	client, err := events.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{client: client, js: js, exec: ex, logs: logs, logMu: &logMu}
	f.start = func(t *testing.T, cfg Config, replica string) (*Service, context.CancelFunc) {
		leases, err := lease.Open(t.Context(), js, lease.Config{RenewEvery: 200 * time.Millisecond, StaleAfter: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		cfg.BlueprintNamespace = "kanister"
		cfg.Replica = replica
		if cfg.WatchdogTick == 0 {
			cfg.WatchdogTick = 100 * time.Millisecond
		}
		svc := New(cfg, Deps{
			Workloads:  workload.NewResolver(kube),
			Blueprints: NewKubeBlueprints(dyn, cfg.NamespacedBlueprints, cfg.BlueprintNamespace),
			Objects:    NewKubeObjects(kube),
			Pods:       NewKubeObjects(kube),
			Policies:   NewKubePolicies(dyn),
			Exec:       ex,
			Publisher:  events.NewPublisher(js, events.RoleHooker.Source()),
			Lookup:     events.NewStreamHistory(js, "").Lookup,
			Leases:     leases,
		}, log.With("replica", replica))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx, js) }()
		var once sync.Once
		stop := func() { once.Do(func() { cancel(); <-done }) }
		t.Cleanup(stop)
		return svc, stop
	}
	return f
}

// logText is everything the fixture's replicas logged so far.
func (f *fixture) logText() string {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	return f.logs.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

var redisWorkload = events.Workload{Cluster: "dev", Namespace: "shop", Kind: events.KindDeployment, Name: "redis"}

func (f *fixture) request(t *testing.T) (string, *eventstest.Collector) {
	t.Helper()
	ev, err := f.client.PublishBackupRequested(t.Context(), events.BackupRequested{BackupRef: events.BackupRef{Workload: redisWorkload}})
	if err != nil {
		t.Fatal(err)
	}
	return ev.BackupID(), eventstest.Collect(t.Context(), t, f.client, events.Filter{BackupID: ev.BackupID()})
}

func kinds(evs []events.Event) []events.Kind {
	out := make([]events.Kind, len(evs))
	for i, e := range evs {
		out[i] = e.Kind()
	}
	return out
}

func TestFreezeThenResumeAfterSnapshot(t *testing.T) {
	f := newFixture(t, Config{}, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	id, col := f.request(t)
	col.Next(5 * time.Second) // requested
	q := col.Next(5 * time.Second)
	qp, ok := q.Payload.(*events.Quiesced)
	if !ok {
		t.Fatalf("want Quiesced, got %s: %+v", q.Kind(), q.Payload)
	}
	if qp.Holder != "hooker-0" || qp.Blueprint != "redis-hooks" || len(qp.Hooks) != 1 || qp.FreezeDeadline.Sub(qp.QuiescedAt) > 5*time.Minute || qp.FreezeDeadline.Sub(qp.QuiescedAt) < 4*time.Minute {
		t.Errorf("quiesced payload %+v", qp)
	}
	pub := events.NewPublisher(f.js, events.RoleSnapshotter.Source())
	if _, _, err := pub.Publish(t.Context(), &events.Snapshotted{BackupRef: qp.BackupRef, Mode: events.SnapshotModeVolume, Snapshots: []events.Snapshot{{Name: "s", Namespace: "shop", PVC: "data", CutAt: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	col.Next(5 * time.Second) // snapshotted
	r := col.Next(5 * time.Second)
	rp, ok := r.Payload.(*events.Resumed)
	if !ok || !rp.Succeeded || rp.Reason != events.ResumeAfterSnapshot || rp.FrozenFor <= 0 {
		t.Fatalf("want successful Resumed, got %s %+v", r.Kind(), r.Payload)
	}
	want := []string{
		"redis-7d9f/redis: redis-cli -a " + password + " CLIENT PAUSE 60000 WRITE",
		"redis-7d9f/redis: redis-cli -a " + password + " CLIENT UNPAUSE",
	}
	got := f.exec.Commands()
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("commands %q, want %q", got, want)
	}
	// A duplicate trigger after the resume runs nothing again.
	watchdog := events.NewPublisher(f.js, events.RoleHooker.Source())
	if _, _, err := watchdog.Publish(t.Context(), &events.UnlockRequested{BackupRef: qp.BackupRef, Reason: "late watchdog"}); err != nil {
		t.Fatal(err)
	}
	col.Next(5 * time.Second) // unlock-requested
	if ev, quiet := col.Quiet(500 * time.Millisecond); !quiet {
		t.Fatalf("late unlock produced %s", ev.Kind())
	}
	if n := len(f.exec.Commands()); n != 2 {
		t.Fatalf("late unlock ran hooks again: %q", f.exec.Commands())
	}
	_ = id
}

func TestPrehookFailureResumesAndFails(t *testing.T) {
	f := newFixture(t, Config{}, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	f.exec.Fail("CLIENT PAUSE", 0)
	_, col := f.request(t)
	evs := col.Until(10*time.Second, events.IsTerminal)
	got := kinds(evs)
	want := []events.Kind{events.KindRequested, events.KindFailed, events.KindResumed}
	if len(got) != len(want) || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("events %v, want %v", got, want)
	}
	failed := evs[1].Payload.(*events.BackupFailed)
	if failed.Step != events.StepQuiesce || !failed.ResumePending || !strings.Contains(failed.Reason, "pauseWrites") {
		t.Errorf("failure %+v", failed)
	}
	if strings.Contains(failed.Reason, password) || strings.Contains(f.logText(), password) {
		t.Fatalf("secret leaked: reason %q", failed.Reason)
	}
	if r := evs[2].Payload.(*events.Resumed); r.Succeeded || r.Reason != events.ResumeAfterPrehookFailed {
		t.Errorf("resumed %+v", r)
	}
	if cmds := f.exec.Commands(); len(cmds) != 2 || !strings.Contains(cmds[1], "CLIENT UNPAUSE") {
		t.Fatalf("post-hook did not run after a failed pre-hook: %q", cmds)
	}
}

func TestFailuresBeforeFreezeNameTheCause(t *testing.T) {
	tests := []struct {
		name        string
		bp          *unstructured.Unstructured
		annotations map[string]string
		workload    events.Workload
		wantReason  []string
	}{
		{"missing workload", redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"},
			events.Workload{Cluster: "dev", Namespace: "shop", Kind: events.KindDeployment, Name: "nope"}, []string{"nope", "not found"}},
		{"no blueprint annotation", redisBlueprint("KubeExec"), nil, redisWorkload, []string{"has no blueprint"}},
		{"blueprint missing", nil, map[string]string{AnnotationBlueprint: "redis-hooks"}, redisWorkload, []string{"blueprint not found", "redis-hooks"}},
		{"unknown func", redisBlueprint("KubeExecEverywhere"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"}, redisWorkload,
			[]string{"redis-hooks", "backupPrehook", "pauseWrites", "KubeExecEverywhere"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Config{}, tt.bp, tt.annotations)
			ev, err := f.client.PublishBackupRequested(t.Context(), events.BackupRequested{BackupRef: events.BackupRef{Workload: tt.workload}})
			if err != nil {
				t.Fatal(err)
			}
			col := eventstest.Collect(t.Context(), t, f.client, events.Filter{BackupID: ev.BackupID()})
			evs := col.Until(10*time.Second, events.IsTerminal)
			last := evs[len(evs)-1]
			failed, ok := last.Payload.(*events.BackupFailed)
			if !ok || failed.ResumePending || failed.Step != events.StepResolve {
				t.Fatalf("want a final BackupFailed at resolve, got %s %+v", last.Kind(), last.Payload)
			}
			for _, w := range tt.wantReason {
				if !strings.Contains(failed.Reason, w) {
					t.Errorf("reason %q does not mention %q", failed.Reason, w)
				}
			}
			if cmds := f.exec.Commands(); len(cmds) != 0 {
				t.Fatalf("hooks ran although the backup failed before freezing: %q", cmds)
			}
		})
	}
}

func TestMaxFreezeForcesResume(t *testing.T) {
	f := newFixture(t, Config{MaxFreeze: 300 * time.Millisecond}, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	_, col := f.request(t) // nobody snapshots
	evs := col.Until(10*time.Second, func(e events.Event) bool { return e.Kind() == events.KindResumed })
	got := kinds(evs)
	want := []events.Kind{events.KindRequested, events.KindQuiesced, events.KindUnlockRequested, events.KindFailed, events.KindResumed}
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
	if r := evs[4].Payload.(*events.Resumed); r.Reason != events.ResumeStaleLock || r.Succeeded {
		t.Errorf("resumed %+v", r)
	}
}

func TestHungHookIsCancelledAtItsTimeout(t *testing.T) {
	f := newFixture(t, Config{HookTimeout: 200 * time.Millisecond}, redisBlueprint("KubeExec"), map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	f.exec.Block("CLIENT PAUSE")
	_, col := f.request(t)
	evs := col.Until(10*time.Second, events.IsTerminal)
	var failed *events.BackupFailed
	for _, e := range evs {
		if p, ok := e.Payload.(*events.BackupFailed); ok {
			failed = p
		}
	}
	if failed == nil || !strings.Contains(failed.Reason, "hook timeout 200ms") {
		t.Fatalf("want a failure naming the hook timeout, got %v", kinds(evs))
	}
	if evs[len(evs)-1].Kind() != events.KindResumed {
		t.Fatalf("a timed-out pre-hook must still be followed by the post-hook: %v", kinds(evs))
	}
}
