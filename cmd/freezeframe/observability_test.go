package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"sigs.k8s.io/yaml"

	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/service"
)

// Every hop of one backup, from the client's request to the notifier's
// handling of Resumed, is a span of one trace.
func TestOneTracePerBackup(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	// The services take their tracers when they are built, so the recorder
	// goes in before the pipeline starts.
	otel.SetTracerProvider(tp)
	t.Cleanup(func() {
		otel.SetTracerProvider(prev)
		_ = tp.Shutdown(context.Background())
	})
	p := startPipeline(t, "")
	id, _ := p.backup(t)

	want := []string{
		"request backup",
		"publish requested", "process requested", "exec backupPrehook",
		"publish quiesced", "process quiesced", "create volumesnapshot", "wait for the cut",
		"publish snapshotted", "process snapshotted", "exec backupPosthook",
		"publish resumed", "process resumed",
		"wait for readiness", "publish snapshot-ready",
	}
	ofBackup := func() map[string][]sdktrace.ReadOnlySpan {
		out := map[string][]sdktrace.ReadOnlySpan{}
		for _, s := range rec.Ended() {
			for _, a := range s.Attributes() {
				if a.Key == "freezeframe.backup_id" && a.Value.AsString() == id {
					out[s.Name()] = append(out[s.Name()], s)
				}
			}
		}
		return out
	}
	var spans map[string][]sdktrace.ReadOnlySpan
	eventstest.Eventually(t, 10*time.Second, "every hop's span ended", func() bool {
		spans = ofBackup()
		for _, name := range want {
			if len(spans[name]) == 0 {
				return false
			}
		}
		return true
	})
	traceID := spans["publish requested"][0].SpanContext().TraceID()
	for _, name := range want {
		for _, s := range spans[name] {
			if s.SpanContext().TraceID() != traceID {
				t.Errorf("span %q is in trace %s, the backup's is %s", name, s.SpanContext().TraceID(), traceID)
			}
		}
	}
	// The client's span is the root; a hook exec is a child of the event it handles.
	var root bool
	for _, s := range spans["request backup"] {
		root = root || (!s.Parent().IsValid() && s.SpanKind() == trace.SpanKindClient)
	}
	if !root {
		t.Error("the client's request backup span is not the root of the trace")
	}
	pre := spans["exec backupPrehook"][0]
	if pre.Parent().SpanID() != spans["process requested"][0].SpanContext().SpanID() {
		t.Error("the pre-hook exec span is not a child of the hooker's process requested span")
	}
	attrs := map[attribute.Key]string{}
	for _, a := range pre.Attributes() {
		attrs[a.Key] = a.Value.Emit()
	}
	for k, v := range map[attribute.Key]string{"k8s.pod.name": "redis-0", "k8s.container.name": "redis", "k8s.namespace.name": "shop", "freezeframe.hook.phase": "pause", "freezeframe.hook.action": "backupPrehook"} {
		if attrs[k] != v {
			t.Errorf("exec span attribute %s = %q, want %q", k, attrs[k], v)
		}
	}
}

// A real scrape of /metrics after one backup shows it once in every metric,
// and every metric the alert rules use.
func TestMetricsEndpointAfterBackup(t *testing.T) {
	metrics, err := service.NewMetrics("freezeframe")
	if err != nil {
		t.Fatal(err)
	}
	// The pipeline's services take the global provider, as `freezeframe up`
	// sets it.
	otel.SetMeterProvider(metrics.Provider())
	t.Cleanup(func() {
		otel.SetMeterProvider(noopmetric.NewMeterProvider())
		_ = metrics.Shutdown(context.Background())
	})
	ep, err := service.Listen("127.0.0.1:0", service.NewHealth(), metrics.Handler(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ep.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})

	p := startPipeline(t, "")
	p.backup(t)
	var body string
	eventstest.Eventually(t, 10*time.Second, "the backup counted and its lease released", func() bool {
		body = scrape(t, "http://"+ep.Addr()+"/metrics")
		return strings.Contains(body, "\nfreezeframe_backups_total{result=\"succeeded\"} 1\n") && strings.Contains(body, "\nfreezeframe_frozen_applications 0\n")
	})
	for _, want := range []string{
		"\nfreezeframe_freeze_duration_seconds_count 1\n",
		"\nfreezeframe_freeze_duration_seconds_bucket{le=\"+Inf\"} 1\n",
		"\nfreezeframe_freeze_duration_seconds_bucket{le=\"600\"} 1\n",
		"\nfreezeframe_freeze_duration_seconds_bucket{le=\"0.001\"} ",
		"\nfreezeframe_hook_duration_seconds_count{action=\"backupPrehook\",phase=\"pause\"} 1\n",
		"\nfreezeframe_hook_duration_seconds_count{action=\"backupPosthook\",phase=\"unpause\"} 1\n",
		"\nfreezeframe_longest_current_freeze_seconds 0\n",
		"\nfreezeframe_consumer_pending_messages{consumer=\"hooker\"} 0\n",
		"\nfreezeframe_consumer_pending_messages{consumer=\"notifier\"} 0\n",
		"# TYPE freezeframe_watchdog_unlocks_total counter",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", strings.TrimSpace(want))
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}

	// A failed backup counts under its step; its freeze was measured too.
	p.exec.Fail("CLIENT PAUSE", 0)
	p.backup(t)
	eventstest.Eventually(t, 10*time.Second, "the failed backup counted", func() bool {
		body = scrape(t, "http://"+ep.Addr()+"/metrics")
		return strings.Contains(body, "\nfreezeframe_backups_total{result=\"failed\",step=\"quiesce\"} 1\n")
	})
	if !strings.Contains(body, "\nfreezeframe_freeze_duration_seconds_count 2\n") || !strings.Contains(body, "\nfreezeframe_backups_total{result=\"succeeded\"} 1\n") {
		t.Errorf("after a failed backup:\n%s", body)
	}

	exposed := exposedNames(body)
	for _, name := range alertMetrics(t) {
		if !exposed[name] {
			t.Errorf("deploy/prometheus/alerts.yaml uses %s, which no service exposes", name)
		}
	}
	// The dashboard may also use the snapshotter's latencies, which it adds.
	exposed["freezeframe_snapshot_cut_duration_seconds"] = true
	exposed["freezeframe_snapshot_ready_duration_seconds"] = true
	for _, name := range dashboardMetrics(t) {
		if !exposed[name] {
			t.Errorf("deploy/grafana/freezeframe-dashboard.json uses %s, which no service exposes", name)
		}
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// exposedNames are the metric families of a scrape (histograms under their
// family name, as rules use them with _bucket, _sum, _count).
func exposedNames(body string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = true
		}
	}
	return out
}

var metricName = regexp.MustCompile(`\bfreezeframe_[a-z_]+\b`)

// family maps a series name to its metric family.
func family(name string) string {
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && strings.HasSuffix(base, "_seconds") {
			return base
		}
	}
	return name
}

func alertMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(b, &rules); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	var names, alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if r.Alert == "" || strings.TrimSpace(r.Expr) == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert %q: needs alert, expr, labels.severity and annotations.summary", r.Alert)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
				}
			}
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") {
				t.Errorf("alert %s: unbalanced parentheses in %q", r.Alert, r.Expr)
			}
			for _, n := range metricName.FindAllString(r.Expr, -1) {
				names = append(names, family(n))
			}
		}
	}
	for _, a := range []string{"FreezeframeBackupFailed", "FreezeframeApplicationFrozenTooLong", "FreezeframeWatchdogUnlocked"} {
		if !slices.Contains(alerts, a) {
			t.Errorf("alerts.yaml has no %s", a)
		}
	}
	return names
}

func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/grafana/freezeframe-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var names []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range metricName.FindAllString(tg.Expr, -1) {
				names = append(names, family(n))
			}
		}
	}
	return names
}
