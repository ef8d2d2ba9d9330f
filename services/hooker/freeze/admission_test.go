package freeze

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/services/hooker/admission"
)

// redisApps makes n more Redis deployments in shop, each with one pod,
// annotated with ann.
func redisApps(n int, ann map[string]string) ([]runtime.Object, []events.Workload) {
	var objs []runtime.Object
	var ws []events.Workload
	for i := range n {
		name := fmt.Sprintf("app-%02d", i)
		labels := map[string]string{"app": name}
		objs = append(objs,
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Annotations: ann, Labels: labels},
				Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}}},
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name + "-0", Namespace: "shop", Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "redis"}}}, Status: corev1.PodStatus{Phase: corev1.PodRunning}})
		ws = append(ws, events.Workload{Cluster: "dev", Namespace: "shop", Kind: events.KindDeployment, Name: name})
	}
	return objs, ws
}

// mostFrozenAtOnce replays the execs in the order they started: each
// pre-hook freezes its pod until its post-hook starts.
func mostFrozenAtOnce(cmds []string) int {
	frozen, most := 0, 0
	for _, c := range cmds {
		switch {
		case strings.Contains(c, "CLIENT PAUSE"):
			frozen++
		case strings.Contains(c, "CLIENT UNPAUSE"):
			frozen--
		}
		most = max(most, frozen)
	}
	return most
}

func (f *fixture) gateStats(t *testing.T) admission.Stats {
	t.Helper()
	st := f.svc.gate.Stats()
	if len(st) != 1 {
		t.Fatalf("gate stats %+v: want the one storage of the default snapshot class", st)
	}
	return st[0]
}

// Many backups requested at once: with admission, never more than the
// limit are frozen and not yet cut at any moment (a slot is given back at
// the cut, so the next pre-hook overlaps a post-hook), the rest wait
// unfrozen (no lease, so the watchdog sees nothing), every backup
// completes, and the wait shows in Quiesced. Without it (the control), all
// freeze together.
func TestAdmissionBoundsTheFreezesInFlight(t *testing.T) {
	const n, limit = 12, 3
	for _, tt := range []struct {
		name     string
		disabled bool
	}{{"admission", false}, {"no admission", true}} {
		t.Run(tt.name, func(t *testing.T) {
			ann := map[string]string{AnnotationKanisterBlueprint: "redis-hooks"}
			objs, workloads := redisApps(n, ann)
			f := newFixture(t, Config{AdmissionInitial: limit, AdmissionMax: limit, AdmissionDisabled: tt.disabled}, redisBlueprint("KubeExec"), ann, objs...)
			col := eventstest.Collect(t.Context(), t, f.client, events.Filter{Namespace: "shop"})
			for _, w := range workloads {
				if _, err := f.client.PublishBackupRequested(t.Context(), events.BackupRequested{BackupRef: events.BackupRef{Workload: w}}); err != nil {
					t.Fatal(err)
				}
			}
			// A stand-in snapshotter that cuts once every freeze it may
			// expect is frozen: limit of them, or what is left.
			snapshotter := events.NewPublisher(f.js, events.RoleSnapshotter.Source())
			var frozen []events.BackupRef
			wasCut := map[string]bool{}
			cut, resumed, waited, mostLeases := 0, 0, 0, 0
			for resumed < n {
				ev := col.Next(20 * time.Second)
				switch p := ev.Payload.(type) {
				case *events.Quiesced:
					frozen = append(frozen, p.BackupRef)
					if p.AdmissionWait > 0 {
						waited++
					}
					if len(frozen) < min(limit, n-cut) {
						continue
					}
					leases, err := f.svc.leases.List(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					uncut := 0
					for _, l := range leases {
						if !wasCut[l.BackupID] {
							uncut++
						}
					}
					mostLeases = max(mostLeases, uncut)
					for _, ref := range frozen {
						wasCut[ref.BackupID] = true
						if _, _, err := snapshotter.Publish(t.Context(), &events.Snapshotted{BackupRef: ref, Mode: events.SnapshotModeVolume, CutDuration: events.Duration(50 * time.Millisecond),
							Snapshots: []events.Snapshot{{Name: "s-" + ref.BackupID, Namespace: "shop", PVC: "data", CutAt: time.Now()}}}); err != nil {
							t.Fatal(err)
						}
					}
					cut += len(frozen)
					frozen = nil
				case *events.Resumed:
					if !p.Succeeded {
						t.Fatalf("backup %s resumed without success: %+v", p.BackupID, p)
					}
					resumed++
				case *events.BackupFailed:
					t.Fatalf("backup %s failed: %+v", p.BackupID, p)
				}
			}
			most := mostFrozenAtOnce(f.exec.Commands())
			t.Logf("%d backups at once: at most %d frozen at once, %d leases of uncut freezes at most when the snapshotter cut, %d waited for admission", n, most, mostLeases, waited)
			if tt.disabled {
				if most <= limit {
					t.Fatalf("without admission at most %d were frozen at once: the test cannot tell admission from none", most)
				}
				return
			}
			if most < limit {
				t.Fatalf("at most %d applications frozen at once, want the limit %d reached", most, limit)
			}
			if mostLeases > limit {
				t.Fatalf("%d freeze leases of freezes not yet cut at once, want at most %d: a waiting request held one", mostLeases, limit)
			}
			if waited == 0 {
				t.Fatal("no Quiesced says its request waited for admission")
			}
			eventstest.Eventually(t, 5*time.Second, "every slot given back", func() bool {
				st := f.gateStats(t)
				return st.InFlight == 0 && st.Waiting == 0
			})
			if st := f.gateStats(t); st.Limit != limit || st.Baseline != 50*time.Millisecond {
				t.Fatalf("gate %+v: want the limit %d kept and the cuts' 50ms as baseline", st, limit)
			}
		})
	}
}

// Every way a freeze ends gives its slot back: a failure the snapshotter
// reports, an operator's unlock, a failed pre-hook, a lost lease, a
// success. With a limit of one, the next request freezes only then.
func TestAdmissionSlotComesBackHoweverTheFreezeEnds(t *testing.T) {
	ann := map[string]string{AnnotationKanisterBlueprint: "redis-hooks"}
	f := newFixture(t, Config{AdmissionInitial: 1, AdmissionMax: 1}, redisBlueprint("KubeExec"), ann)
	ctx := t.Context()
	cache := events.Workload{Cluster: "dev", Namespace: "shop", Kind: events.KindDeployment, Name: "cache"}
	request := func(w events.Workload) *eventstest.Collector {
		t.Helper()
		ev, err := f.client.PublishBackupRequested(ctx, events.BackupRequested{BackupRef: events.BackupRef{Workload: w}})
		if err != nil {
			t.Fatal(err)
		}
		return eventstest.Collect(ctx, t, f.client, events.Filter{BackupID: ev.BackupID()})
	}
	quiesced := func(col *eventstest.Collector) *events.Quiesced {
		t.Helper()
		evs := col.Until(10*time.Second, func(e events.Event) bool { return e.Kind() == events.KindQuiesced || events.IsTerminal(e) })
		q, ok := evs[len(evs)-1].Payload.(*events.Quiesced)
		if !ok {
			t.Fatalf("want Quiesced, got %v", kinds(evs))
		}
		return q
	}
	ended := func(col *eventstest.Collector) *events.Resumed {
		t.Helper()
		evs := col.Until(10*time.Second, events.IsTerminal)
		r, ok := evs[len(evs)-1].Payload.(*events.Resumed)
		if !ok {
			t.Fatalf("want Resumed last, got %v", kinds(evs))
		}
		return r
	}
	waiting := func(what string) {
		t.Helper()
		eventstest.Eventually(t, 5*time.Second, what, func() bool { st := f.gateStats(t); return st.InFlight == 1 && st.Waiting == 1 })
		if leases, err := f.svc.leases.List(ctx); err != nil || len(leases) != 1 {
			t.Fatalf("leases %+v (%v) while one request waits: want only the frozen one", leases, err)
		}
	}

	// 1. A is frozen; B waits. The snapshotter fails A: B's turn.
	colA := request(redisWorkload)
	a := quiesced(colA)
	colB := request(cache)
	waiting("B waits behind A")
	if _, _, err := events.NewPublisher(f.js, events.RoleSnapshotter.Source()).Publish(ctx,
		&events.BackupFailed{BackupRef: a.BackupRef, Step: events.StepSnapshot, Reason: "cut failed", ResumePending: true}); err != nil {
		t.Fatal(err)
	}
	if r := ended(colA); r.Succeeded {
		t.Fatalf("A: %+v", r)
	}
	b := quiesced(colB)
	if b.AdmissionWait <= 0 {
		t.Fatalf("B's Quiesced says it did not wait: %+v", b)
	}

	// 2. C (a pre-hook that will fail) waits; an operator unlocks B.
	f.exec.Fail("CLIENT PAUSE", 1)
	colC := request(redisWorkload)
	waiting("C waits behind B")
	if _, _, err := events.NewPublisher(f.js, events.RoleHooker.Source()).Publish(ctx,
		&events.UnlockRequested{BackupRef: b.BackupRef, Reason: events.ResumeOperator, RequestedBy: "operator/test"}); err != nil {
		t.Fatal(err)
	}
	if r := ended(colB); r.Reason != events.ResumeOperator {
		t.Fatalf("B: %+v", r)
	}

	// 3. C's pre-hook fails, which ends it: D's turn.
	if r := ended(colC); r.Reason != events.ResumeAfterPrehookFailed {
		t.Fatalf("C: %+v", r)
	}
	colD := request(cache)
	d := quiesced(colD)

	// 4. D's lease is taken over and ended elsewhere: this replica loses
	// it when D's Snapshotted comes, and gives its slot back.
	other, err := f.svc.leases.TakeOver(ctx, d.Workload, d.BackupID, "hooker-b")
	if err != nil {
		t.Fatal(err)
	}
	if err := other.End(ctx, events.FreezeEnd{Reason: events.ResumeStaleLock, Resumed: true}); err != nil {
		t.Fatal(err)
	}
	f.snapshotted(t, d.BackupRef)
	eventstest.Eventually(t, 5*time.Second, "the lost freeze's slot given back", func() bool { return f.gateStats(t).InFlight == 0 })

	// 5. E succeeds, and leaves nothing behind.
	colE := request(redisWorkload)
	e := quiesced(colE)
	f.snapshotted(t, e.BackupRef)
	if r := ended(colE); !r.Succeeded {
		t.Fatalf("E: %+v", r)
	}
	eventstest.Eventually(t, 5*time.Second, "every slot given back", func() bool { st := f.gateStats(t); return st.InFlight == 0 && st.Waiting == 0 })
	waitReleased(t, f.svc.leases)
}

// The admission keys, read from the environment: on, 4 and 64 by default;
// a limit that cannot be stops the hooker at start, naming the key.
func TestAdmissionFromEnvironment(t *testing.T) {
	keys := []string{"ADMISSION_DISABLED", "ADMISSION_INITIAL", "ADMISSION_MAX"}
	for _, k := range keys {
		for _, name := range []string{"HOOKER_" + k, k} {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	var cfg Config
	if _, err := service.Load("HOOKER", &cfg, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	got, err := cfg.admissionConfig()
	if err != nil || got != (admission.Config{Initial: 4, Max: 64}) {
		t.Fatalf("defaults: %+v, %v", got, err)
	}
	for _, tt := range []struct {
		env     map[string]string
		want    admission.Config
		wantErr string
	}{
		{env: map[string]string{"HOOKER_ADMISSION_DISABLED": "true"}, want: admission.Config{Disabled: true, Initial: 4, Max: 64}},
		{env: map[string]string{"HOOKER_ADMISSION_INITIAL": "2", "HOOKER_ADMISSION_MAX": "8"}, want: admission.Config{Initial: 2, Max: 8}},
		{env: map[string]string{"HOOKER_ADMISSION_INITIAL": "-1"}, wantErr: "HOOKER_ADMISSION_INITIAL -1"},
		{env: map[string]string{"HOOKER_ADMISSION_MAX": "-3"}, wantErr: "HOOKER_ADMISSION_MAX -3"},
		{env: map[string]string{"HOOKER_ADMISSION_INITIAL": "100"}, wantErr: "HOOKER_ADMISSION_INITIAL 100 is above HOOKER_ADMISSION_MAX 64"},
	} {
		for k, v := range tt.env {
			t.Setenv(k, v)
		}
		cfg := Config{}
		if _, err := service.Load("HOOKER", &cfg, nil, io.Discard); err != nil {
			t.Fatal(err)
		}
		got, err := cfg.admissionConfig()
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%v: error %v, want one saying %q", tt.env, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("%v: %+v, %v; want %+v", tt.env, got, err, tt.want)
		}
		for k := range tt.env {
			os.Unsetenv(k)
		}
	}
}
