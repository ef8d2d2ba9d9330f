package schedule_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/services/scheduler/schedule"
)

const cluster = "dev"

func objectMeta(name string, annotations map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: "shop", Name: name, Annotations: annotations}
}

// cluster objects: redis bound by Kanister's annotation, pg (a StatefulSet)
// by freezeframe's, plain and blank bound by nothing.
func kube() *fake.Clientset {
	return fake.NewClientset(
		&appsv1.Deployment{ObjectMeta: objectMeta("redis", map[string]string{schedule.AnnotationKanisterBlueprint: "redis-hooks"})},
		&appsv1.StatefulSet{ObjectMeta: objectMeta("pg", map[string]string{schedule.AnnotationBlueprint: "pg-hooks"})},
		&appsv1.Deployment{ObjectMeta: objectMeta("plain", nil)},
		&appsv1.Deployment{ObjectMeta: objectMeta("blank", map[string]string{schedule.AnnotationKanisterBlueprint: ""})},
	)
}

func request(id, kind, name string) events.BackupRequested {
	return events.BackupRequested{BackupRef: events.BackupRef{
		BackupID: id,
		Workload: events.Workload{Cluster: cluster, Namespace: "shop", Kind: kind, Name: name},
	}}
}

type harness struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	client *events.Client
	// stop ends the scheduler and waits for Run to return.
	stop func()
}

// start runs a scheduler over kube against a fresh embedded server and
// returns once it answers requests.
func start(t *testing.T, kube kubernetes.Interface) *harness {
	t.Helper()
	srv := eventstest.NewServer(t)
	nc, js := srv.JetStream()
	cfg := schedule.Config{Common: service.Common{Cluster: cluster, ShutdownTimeout: 5 * time.Second}}
	svc := schedule.New(cfg, schedule.NewKubeWorkloads(kube), events.NewPublisher(js, events.RoleScheduler.Source()), slog.New(slog.NewTextHandler(t.Output(), nil)))
	ctx, cancel := context.WithCancel(context.Background())
	var runErr error
	finished := make(chan struct{})
	go func() { runErr = svc.Run(ctx, nc); close(finished) }()
	stopped := false
	stop := func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-finished:
			if runErr != nil {
				t.Errorf("Run: %v", runErr)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	}
	t.Cleanup(stop)
	client, err := events.NewClient(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{nc: srv.Connect(), js: js, client: client, stop: stop}
	h.waitServing(t, finished, &runErr)
	return h
}

// waitServing polls until a scheduler answers, with a request that is
// refused without side effects.
func (h *harness) waitServing(t *testing.T, finished <-chan struct{}, runErr *error) {
	t.Helper()
	var err error
	eventstest.Eventually(t, 10*time.Second, "scheduler answering", func() bool {
		select {
		case <-finished:
			t.Fatalf("Run returned before serving: %v", *runErr)
		default:
		}
		_, err = h.nc.Request(events.APISubject(cluster), []byte(`{}`), time.Second)
		return err == nil
	})
}

// raw sends body as a request and decodes the reply.
func (h *harness) raw(t *testing.T, body string) events.BackupRequestReply {
	t.Helper()
	msg, err := h.nc.Request(events.APISubject(cluster), []byte(body), 5*time.Second)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	var reply events.BackupRequestReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		t.Fatalf("reply %q: %v", msg.Data, err)
	}
	return reply
}

func TestRequestBackup(t *testing.T) {
	tests := []struct {
		name          string
		req           events.BackupRequested
		wantBlueprint string // in the published request: only an override
		wantKind      string
		wantRefusal   string // substring of the reason; empty: accepted
	}{
		{name: "kanister annotation", req: request("bk-redis", "Deployment", "redis"), wantKind: events.KindDeployment},
		{name: "freezeframe annotation, short kind", req: request("bk-pg", "sts", "pg"), wantKind: events.KindStatefulSet},
		{name: "blueprint override", req: func() events.BackupRequested {
			r := request("bk-plain", "deploy", "plain")
			r.Blueprint = "generic-hooks"
			return r
		}(), wantBlueprint: "generic-hooks", wantKind: events.KindDeployment},
		{name: "missing workload", req: request("bk-ghost", "Deployment", "ghost"), wantRefusal: "not found"},
		{name: "kind mismatch", req: request("bk-redis-sts", "StatefulSet", "redis"), wantRefusal: "not found"},
		{name: "no blueprint annotation", req: request("bk-plain", "Deployment", "plain"), wantRefusal: "no blueprint"},
		{name: "blank blueprint annotation", req: request("bk-blank", "Deployment", "blank"), wantRefusal: "no blueprint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, kube())
			id, err := h.client.RequestBackup(t.Context(), tt.req)
			if id != tt.req.BackupID {
				t.Errorf("reply backup id %q, want %q", id, tt.req.BackupID)
			}
			// The scheduler replies only after the stream acknowledged what
			// it published, so after a reply the stream is final.
			got := eventstest.Stored(t, h.js, events.Filter{})
			if len(got) != 1 {
				t.Fatalf("stream holds %d events, want 1: %v", len(got), got)
			}
			ev := got[0]
			if ev.BackupID() != tt.req.BackupID || ev.CloudEvent.Extensions()[events.ExtCluster] != cluster {
				t.Errorf("event names backup %q cluster %v", ev.BackupID(), ev.CloudEvent.Extensions()[events.ExtCluster])
			}

			if tt.wantRefusal == "" {
				if err != nil {
					t.Fatalf("RequestBackup: %v", err)
				}
				p, ok := ev.Payload.(*events.BackupRequested)
				if !ok {
					t.Fatalf("event %s, want BackupRequested", ev.Kind())
				}
				if p.Workload.Kind != tt.wantKind || p.Workload.Name != tt.req.Workload.Name || p.Blueprint != tt.wantBlueprint || p.RequestedBy != "api" {
					t.Errorf("published %+v", p)
				}
				if ev.CloudEvent.ID() != events.DefaultID(p) {
					t.Errorf("event id %q is not derived from the backup id", ev.CloudEvent.ID())
				}
				return
			}

			if !errors.Is(err, events.ErrRequestRefused) || !strings.Contains(err.Error(), tt.wantRefusal) {
				t.Fatalf("RequestBackup error %v, want a refusal containing %q", err, tt.wantRefusal)
			}
			f, ok := ev.Payload.(*events.BackupFailed)
			if !ok {
				t.Fatalf("event %s, want BackupFailed", ev.Kind())
			}
			if f.Step != events.StepRequest || f.ResumePending || !strings.Contains(f.Reason, tt.wantRefusal) || !events.IsTerminal(ev) {
				t.Errorf("BackupFailed %+v: want step %q, terminal, reason containing %q", f, events.StepRequest, tt.wantRefusal)
			}
		})
	}
}

// A client that lost the reply retries with the same id: the backup starts
// once, and a refusal is reported once.
func TestRetriedRequestPublishesOnce(t *testing.T) {
	h := start(t, kube())
	for attempt := range 3 {
		if _, err := h.client.RequestBackup(t.Context(), request("bk-1", "Deployment", "redis")); err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
		if _, err := h.client.RequestBackup(t.Context(), request("bk-2", "Deployment", "ghost")); !errors.Is(err, events.ErrRequestRefused) {
			t.Fatalf("attempt %d: refusal: %v", attempt, err)
		}
	}
	got := eventstest.Stored(t, h.js, events.Filter{})
	if len(got) != 2 || got[0].Kind() != events.KindRequested || got[0].BackupID() != "bk-1" || got[1].Kind() != events.KindFailed || got[1].BackupID() != "bk-2" {
		t.Fatalf("stream holds %v, want one requested bk-1 and one failed bk-2", got)
	}

	// The events reach a subscriber as well.
	col := eventstest.Collect(t.Context(), t, h.client, events.Filter{BackupID: "bk-1"})
	if ev := col.Next(5 * time.Second); ev.Kind() != events.KindRequested {
		t.Errorf("subscriber saw %s", ev.Kind())
	}
}

func TestInvalidRequest(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantID     string
		wantFailed bool // a BackupFailed is published: the id and workload are valid
	}{
		{name: "not json", body: `{"backupId": `},
		{name: "wrong type", body: `{"backupId": 7}`},
		{name: "no backup id", body: `{"workload": {"cluster": "dev", "namespace": "shop", "kind": "Deployment", "name": "redis"}}`},
		{name: "bad backup id", body: `{"backupId": "a.b", "workload": {"cluster": "dev", "namespace": "shop", "kind": "Deployment", "name": "redis"}}`, wantID: "a.b"},
		{name: "bad namespace", body: `{"backupId": "bk-1", "workload": {"cluster": "dev", "namespace": "Shop!", "kind": "Deployment", "name": "redis"}}`, wantID: "bk-1"},
		{name: "unsupported kind", body: `{"backupId": "bk-1", "workload": {"cluster": "dev", "namespace": "shop", "kind": "DaemonSet", "name": "redis"}}`, wantID: "bk-1"},
		{name: "other cluster", body: `{"backupId": "bk-1", "workload": {"cluster": "prod", "namespace": "shop", "kind": "Deployment", "name": "redis"}}`, wantID: "bk-1"},
		{name: "negative max freeze", body: `{"backupId": "bk-1", "maxFreeze": "-1s", "workload": {"cluster": "dev", "namespace": "shop", "kind": "Deployment", "name": "redis"}}`, wantID: "bk-1", wantFailed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, kube())
			reply := h.raw(t, tt.body)
			if reply.Error == "" || reply.BackupID != tt.wantID {
				t.Errorf("reply %+v, want an error for backup %q", reply, tt.wantID)
			}
			got := eventstest.Stored(t, h.js, events.Filter{})
			switch {
			case tt.wantFailed:
				if len(got) != 1 || got[0].Kind() != events.KindFailed || got[0].BackupID() != tt.wantID || !events.IsTerminal(got[0]) {
					t.Errorf("stream holds %v, want one terminal BackupFailed", got)
				}
			case len(got) != 0:
				t.Errorf("stream holds %v, want nothing", got)
			}
		})
	}
}

// When Kubernetes does not answer, the scheduler cannot know whether the
// workload exists: it says so and records nothing, so a retry can succeed.
func TestKubernetesUnreachable(t *testing.T) {
	k := kube()
	k.PrependReactor("get", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("dial tcp 10.0.0.1:443: connect: connection refused")
	})
	h := start(t, k)
	_, err := h.client.RequestBackup(t.Context(), request("bk-1", "Deployment", "redis"))
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "retry") {
		t.Fatalf("RequestBackup: %v, want the Kubernetes error and a hint to retry", err)
	}
	if got := eventstest.Stored(t, h.js, events.Filter{}); len(got) != 0 {
		t.Errorf("stream holds %v, want nothing", got)
	}
}

func TestRunStopsServingOnCancel(t *testing.T) {
	h := start(t, kube())
	h.stop()
	_, err := h.nc.Request(events.APISubject(cluster), []byte(`{}`), 2*time.Second)
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("request after stop: %v, want no responders", err)
	}
}
