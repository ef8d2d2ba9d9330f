package policy_test

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/workload"
	"github.com/freezeframe/freezeframe/services/scheduler/policy"
)

const cluster = "dev"

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// kube holds redis and pg (labelled backup=nightly, bound to blueprints),
// web (not labelled) and cache (labelled, no blueprint) in shop.
func kube() *fake.Clientset {
	meta := func(name string, lbl bool, bp string) metav1.ObjectMeta {
		m := metav1.ObjectMeta{Namespace: "shop", Name: name}
		if lbl {
			m.Labels = map[string]string{"backup": "nightly"}
		}
		if bp != "" {
			m.Annotations = map[string]string{workload.AnnotationKanisterBlueprint: bp}
		}
		return m
	}
	return fake.NewClientset(
		&appsv1.Deployment{ObjectMeta: meta("redis", true, "redis-hooks")},
		&appsv1.StatefulSet{ObjectMeta: meta("pg", true, "pg-hooks")},
		&appsv1.Deployment{ObjectMeta: meta("web", false, "web-hooks")},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: "cache", Labels: map[string]string{"backup": "nightly"}}},
	)
}

func newPolicy(name, schedule, tz string, created time.Time, mutate ...func(map[string]any)) *unstructured.Unstructured {
	spec := map[string]any{
		"schedule":  schedule,
		"selection": map[string]any{"labelSelector": map[string]any{"matchLabels": map[string]any{"backup": "nightly"}}},
		"maxFreeze": "30s",
	}
	if tz != "" {
		spec["timeZone"] = tz
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "freezeframe.io/v1alpha1", "kind": "BackupPolicy",
		"metadata": map[string]any{"name": name, "namespace": "shop", "uid": "uid-" + name,
			"creationTimestamp": created.UTC().Format(time.RFC3339)},
		"spec": spec,
	}}
	for _, m := range mutate {
		m(u.Object)
	}
	return u
}

func dynClient(objs ...runtime.Object) *dynfake.FakeDynamicClient {
	return dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schemaGVR]string{policy.GVR: "BackupPolicyList"}, objs...)
}

type harness struct {
	js   jetstream.JetStream
	pub  *events.Publisher
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newHarness(t *testing.T) *harness {
	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	if _, err := events.EnsureStream(t.Context(), js, events.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	return &harness{js: js, pub: events.NewPublisher(js, events.RoleScheduler.Source()), logs: &syncBuffer{}}
}

func (h *harness) scheduler(dyn *dynfake.FakeDynamicClient) *policy.Scheduler {
	log := slog.New(slog.NewJSONHandler(h.logs, nil))
	return policy.New(policy.Config{Cluster: cluster}, dyn, policy.NewKubeLister(kube()), h.pub,
		events.NewStreamHistory(h.js, events.DefaultStream), policy.SystemClock{}, log)
}

func summary(evs []events.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, string(e.Kind())+" "+e.Workload().Name)
	}
	slices.Sort(out)
	return out
}

func status(t *testing.T, dyn *dynfake.FakeDynamicClient, name string) policy.Status {
	t.Helper()
	u, err := dyn.Resource(policy.GVR).Namespace("shop").Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.FromUnstructured(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Status
}

func TestTicks(t *testing.T) {
	h := newHarness(t)
	dyn := dynClient(newPolicy("nightly", "@hourly", "", at("2026-03-01T00:10:00Z")))
	s := h.scheduler(dyn)

	next, err := s.Reconcile(t.Context(), at("2026-03-01T00:30:00Z"))
	if err != nil {
		t.Fatal(err)
	}
	if !next.Equal(at("2026-03-01T01:00:00Z")) || len(eventstest.Stored(t, h.js, events.Filter{})) != 0 {
		t.Fatalf("before the first tick: next %v, stream %v", next, summary(eventstest.Stored(t, h.js, events.Filter{})))
	}
	if st := status(t, dyn, "nightly"); st.NextScheduleTime == nil || !st.NextScheduleTime.Time.Equal(next) || st.LastScheduleTime != nil {
		t.Errorf("status %+v", st)
	}

	if _, err := s.Reconcile(t.Context(), at("2026-03-01T01:00:00Z")); err != nil {
		t.Fatal(err)
	}
	got := eventstest.Stored(t, h.js, events.Filter{})
	if want := []string{"requested pg", "requested redis"}; !slices.Equal(summary(got), want) {
		t.Fatalf("first tick published %v, want %v", summary(got), want)
	}
	for _, ev := range got {
		p := ev.Payload.(*events.BackupRequested)
		if p.RequestedBy != "policy/shop/nightly" || p.MaxFreeze.Std() != 30*time.Second || !strings.HasPrefix(p.BackupID, "nightly-20260301t0100-") {
			t.Errorf("request %+v", p)
		}
	}
	st := status(t, dyn, "nightly")
	if !st.LastScheduleTime.Time.Equal(at("2026-03-01T01:00:00Z")) || !st.NextScheduleTime.Time.Equal(at("2026-03-01T02:00:00Z")) ||
		st.LastRun == nil || len(st.LastRun.Backups) != 2 || st.LastResult == nil || st.LastResult.Phase != "Running" {
		t.Errorf("status after a tick %+v", st)
	}

	// Later in the same hour: nothing new. At the next tick: new backups.
	if _, err := s.Reconcile(t.Context(), at("2026-03-01T01:40:00Z")); err != nil {
		t.Fatal(err)
	}
	if n := len(eventstest.Stored(t, h.js, events.Filter{})); n != 2 {
		t.Fatalf("stream holds %d events after a reconcile between ticks, want 2", n)
	}
	if _, err := s.Reconcile(t.Context(), at("2026-03-01T02:00:01Z")); err != nil {
		t.Fatal(err)
	}
	if n := len(eventstest.Stored(t, h.js, events.Filter{})); n != 4 {
		t.Fatalf("stream holds %d events after the second tick, want 4", n)
	}

	// The result comes from the events.
	for _, b := range status(t, dyn, "nightly").LastRun.Backups {
		ns, rest, _ := strings.Cut(b.Workload, "/")
		kind, name, _ := strings.Cut(rest, "/")
		k, _ := events.NormalizeKind(kind)
		ref := events.BackupRef{BackupID: b.BackupID, Workload: events.Workload{Cluster: cluster, Namespace: ns, Kind: k, Name: name}}
		// As the hooker would end them.
		hooker := events.NewPublisher(h.js, events.RoleHooker.Source())
		var err error
		if name == "pg" {
			_, _, err = hooker.Publish(t.Context(), &events.Resumed{BackupRef: ref, Reason: events.ResumeAfterSnapshot, Succeeded: true})
		} else {
			_, _, err = hooker.Publish(t.Context(), &events.BackupFailed{BackupRef: ref, Step: events.StepQuiesce, Reason: "exec failed"})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Reconcile(t.Context(), at("2026-03-01T02:10:00Z")); err != nil {
		t.Fatal(err)
	}
	if r := status(t, dyn, "nightly").LastResult; r == nil || r.Phase != "PartiallyFailed" || r.Succeeded != 1 || r.Failed != 1 {
		t.Errorf("last result %+v, want PartiallyFailed 1/1", r)
	}
}

func TestTimeZones(t *testing.T) {
	tests := []struct {
		name              string
		tz                string
		created, before   time.Time
		wantTick, wantNxt time.Time
	}{
		// 02:00 in Paris is 01:00 UTC in winter (CET) and 00:00 UTC in summer (CEST).
		{"paris winter", "Europe/Paris", at("2026-01-09T12:00:00Z"), at("2026-01-10T00:59:00Z"), at("2026-01-10T01:00:00Z"), at("2026-01-11T01:00:00Z")},
		{"paris summer", "Europe/Paris", at("2026-07-09T12:00:00Z"), at("2026-07-09T23:59:00Z"), at("2026-07-10T00:00:00Z"), at("2026-07-11T00:00:00Z")},
		{"new york", "America/New_York", at("2026-01-09T12:00:00Z"), at("2026-01-10T06:59:00Z"), at("2026-01-10T07:00:00Z"), at("2026-01-11T07:00:00Z")},
		{"utc default", "", at("2026-01-09T12:00:00Z"), at("2026-01-10T01:59:00Z"), at("2026-01-10T02:00:00Z"), at("2026-01-11T02:00:00Z")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			dyn := dynClient(newPolicy("daily", "0 2 * * *", tt.tz, tt.created))
			s := h.scheduler(dyn)
			if _, err := s.Reconcile(t.Context(), tt.before); err != nil {
				t.Fatal(err)
			}
			if n := len(eventstest.Stored(t, h.js, events.Filter{})); n != 0 {
				t.Fatalf("a minute before the tick: %d events", n)
			}
			next, err := s.Reconcile(t.Context(), tt.wantTick)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(eventstest.Stored(t, h.js, events.Filter{})); n != 2 {
				t.Fatalf("at the tick: %d events, want 2", n)
			}
			st := status(t, dyn, "daily")
			if !st.LastScheduleTime.Time.Equal(tt.wantTick) || !next.Equal(tt.wantNxt) {
				t.Errorf("last %v next %v, want %v %v", st.LastScheduleTime, next, tt.wantTick, tt.wantNxt)
			}
		})
	}
}

// After downtime the latest missed tick runs once, not once per tick.
func TestMissedTickRunsOnce(t *testing.T) {
	h := newHarness(t)
	p := newPolicy("nightly", "@hourly", "", at("2026-03-01T00:10:00Z"), func(o map[string]any) {
		o["status"] = map[string]any{"lastScheduleTime": "2026-03-01T01:00:00Z"}
	})
	dyn := dynClient(p)
	s := h.scheduler(dyn)
	if _, err := s.Reconcile(t.Context(), at("2026-03-01T05:30:00Z")); err != nil {
		t.Fatal(err)
	}
	got := eventstest.Stored(t, h.js, events.Filter{})
	if len(got) != 2 {
		t.Fatalf("after downtime: %v, want one request per workload", summary(got))
	}
	for _, ev := range got {
		if !strings.Contains(ev.BackupID(), "-20260301t0500-") {
			t.Errorf("backup %s is not for the latest missed tick (05:00)", ev.BackupID())
		}
	}
	st := status(t, dyn, "nightly")
	if st.MissedTicks != 3 || !st.LastScheduleTime.Time.Equal(at("2026-03-01T05:00:00Z")) {
		t.Errorf("status %+v, want 3 missed ticks, last 05:00", st)
	}
	if !strings.Contains(h.logs.String(), "missed ticks") || !strings.Contains(h.logs.String(), `"missed":3`) {
		t.Errorf("the missed ticks are not logged: %s", h.logs.String())
	}
	if _, err := s.Reconcile(t.Context(), at("2026-03-01T05:45:00Z")); err != nil {
		t.Fatal(err)
	}
	if n := len(eventstest.Stored(t, h.js, events.Filter{})); n != 2 {
		t.Errorf("a second reconcile after downtime published again: %d events", n)
	}
}

// Two schedulers that both see the tick due (neither saw the other's status
// yet) request one backup per workload.
func TestTwoSchedulersOneRequest(t *testing.T) {
	h := newHarness(t)
	created := at("2026-03-01T00:10:00Z")
	a := h.scheduler(dynClient(newPolicy("nightly", "@hourly", "", created)))
	b := h.scheduler(dynClient(newPolicy("nightly", "@hourly", "", created)))
	var wg sync.WaitGroup
	for _, s := range []*policy.Scheduler{a, b, a, b} {
		wg.Go(func() {
			if _, err := s.Reconcile(t.Context(), at("2026-03-01T01:00:00Z")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got, want := summary(eventstest.Stored(t, h.js, events.Filter{})), []string{"requested pg", "requested redis"}; !slices.Equal(got, want) {
		t.Errorf("stream holds %v, want %v", got, want)
	}
}

func TestPausedAndRefused(t *testing.T) {
	h := newHarness(t)
	created := at("2026-03-01T00:10:00Z")
	dyn := dynClient(
		newPolicy("paused", "@hourly", "", created, func(o map[string]any) { o["spec"].(map[string]any)["paused"] = true }),
		// Every Deployment in shop, the unlabelled web included.
		newPolicy("all", "@hourly", "", created, func(o map[string]any) {
			o["spec"].(map[string]any)["selection"] = map[string]any{"kinds": []any{"deploy"}}
			o["spec"].(map[string]any)["blueprint"] = ""
		}),
		newPolicy("bad", "61 * * * *", "", created),
		// A credential as an option would be stored in the stream: nothing is requested.
		newPolicy("leaky", "@hourly", "", created, func(o map[string]any) {
			o["spec"].(map[string]any)["options"] = map[string]any{"dbPassword": "hunter2"}
		}),
		// ops/cache has no blueprint: its backup ends at once, and says why.
		newPolicy("ops", "@hourly", "", created, func(o map[string]any) {
			o["spec"].(map[string]any)["selection"].(map[string]any)["namespaces"] = []any{"ops"}
		}),
	)
	s := h.scheduler(dyn)
	_, err := s.Reconcile(t.Context(), at("2026-03-01T01:00:00Z"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := summary(eventstest.Stored(t, h.js, events.Filter{})), []string{"failed cache", "requested redis", "requested web"}; !slices.Equal(got, want) {
		t.Errorf("stream holds %v, want %v (paused publishes nothing, kinds restrict, no blueprint is refused)", got, want)
	}
	for _, ev := range eventstest.Stored(t, h.js, events.Filter{}) {
		if f, ok := ev.Payload.(*events.BackupFailed); ok && (f.Step != events.StepRequest || !strings.Contains(f.Reason, "no blueprint") || !events.IsTerminal(ev)) {
			t.Errorf("refusal %+v", f)
		}
	}
	if st := status(t, dyn, "paused"); st.Message != "paused" || st.NextScheduleTime != nil {
		t.Errorf("paused status %+v", st)
	}
	if st := status(t, dyn, "bad"); !strings.Contains(st.Message, "61") {
		t.Errorf("invalid schedule status %+v", st)
	}
	if st := status(t, dyn, "leaky"); !strings.Contains(st.Message, "options.dbPassword") || !strings.Contains(st.Message, "Kubernetes Secret") || st.NextScheduleTime != nil {
		t.Errorf("secret option status %+v", st)
	}
}
