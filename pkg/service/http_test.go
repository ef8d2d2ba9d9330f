package service

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

func get(t *testing.T, url string) (int, string) {
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
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func serve(t *testing.T, health *Health, metrics *Metrics) string {
	t.Helper()
	ep, err := Listen("127.0.0.1:0", health, metrics.Handler(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ep.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return "http://" + ep.Addr()
}

func TestEndpointProbes(t *testing.T) {
	srv := eventstest.NewServer(t)
	nc := srv.Connect()
	metrics, err := NewMetrics("t")
	if err != nil {
		t.Fatal(err)
	}
	health := NewHealth()
	hooker, notifier := health.Probe("hooker"), health.Probe("notifier")
	base := serve(t, health, metrics)

	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d", code)
	}
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "hooker: not serving yet") {
		t.Fatalf("/readyz before any service is ready: %d %q", code, body)
	}
	hooker.Ready(nc)
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || strings.Contains(body, "hooker") || !strings.Contains(body, "notifier") {
		t.Fatalf("/readyz with one of two ready: %d %q", code, body)
	}
	notifier.Ready(nc)
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz with both ready: %d %q", code, body)
	}
	nc.Close()
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "NATS CLOSED") {
		t.Fatalf("/readyz after NATS closed: %d %q", code, body)
	}
	var nilProbe *Probe
	nilProbe.Ready(nil) // a service run without a probe
	nilProbe.NotReady()
}

// The exporter must not add unit or _total suffixes: the names in the code
// are the names on the dashboard.
func TestMetricsExactNamesAndConsumerLag(t *testing.T) {
	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	metrics, err := NewMetrics("t")
	if err != nil {
		t.Fatal(err)
	}
	c := Common{Runtime: Runtime{Meters: metrics.Provider()}}
	m := c.Meter("test")
	counter, err := m.Int64Counter("freezeframe_things_total")
	if err != nil {
		t.Fatal(err)
	}
	hist, err := m.Float64Histogram("freezeframe_thing_duration_seconds", metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(DurationBuckets()...))
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(t.Context(), 2)
	hist.Record(t.Context(), 0.003)

	if _, err := js.CreateOrUpdateConsumer(t.Context(), events.DefaultStream, jetstream.ConsumerConfig{Durable: "lagging", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := js.Publish(t.Context(), "freezeframe.backup.requested.dev.shop.deployment.redis.bk-"+string(rune('a'+i)), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := ObserveConsumers(c, js, events.DefaultStream, "lagging")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reg.Unregister() }()

	_, body := get(t, serve(t, NewHealth(), metrics)+"/metrics")
	for _, want := range []string{
		"\nfreezeframe_things_total 2\n",
		"\nfreezeframe_thing_duration_seconds_count 1\n",
		`freezeframe_thing_duration_seconds_bucket{le="0.005"} 1`,
		`freezeframe_thing_duration_seconds_bucket{le="0.0025"} 0`,
		`freezeframe_consumer_pending_messages{consumer="lagging"} 3`,
		`target_info{`,
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q:\n%s", want, body)
		}
	}
	for _, bad := range []string{"_total_total", "_seconds_seconds", "otel_scope_name"} {
		if strings.Contains(body, bad) {
			t.Errorf("scrape has %q:\n%s", bad, body)
		}
	}
}

func TestResourceHonoursOTELServiceName(t *testing.T) {
	res, err := newResource("hooker")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := res.Set().Value("service.name"); v.AsString() != "hooker" {
		t.Fatalf("service.name %q", v.AsString())
	}
	t.Setenv("OTEL_SERVICE_NAME", "hooker-prod")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod")
	if res, err = newResource("hooker"); err != nil {
		t.Fatal(err)
	}
	if v, _ := res.Set().Value("service.name"); v.AsString() != "hooker-prod" {
		t.Errorf("OTEL_SERVICE_NAME ignored: service.name %q", v.AsString())
	}
	if v, _ := res.Set().Value("deployment.environment"); v.AsString() != "prod" {
		t.Errorf("OTEL_RESOURCE_ATTRIBUTES ignored: %v", res)
	}
}

func TestTraceExporterFromEnvironment(t *testing.T) {
	tests := []struct {
		env     map[string]string
		want    bool
		wantErr bool
	}{
		{env: map[string]string{}, want: false},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, want: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, want: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, want: false},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, want: false},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, want: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "console"}, want: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(envName(tt.env), func(t *testing.T) {
			for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"} {
				t.Setenv(k, tt.env[k])
			}
			exp, err := traceExporter(t.Context())
			if (err != nil) != tt.wantErr || (exp != nil) != tt.want {
				t.Fatalf("exporter %T, err %v", exp, err)
			}
			if exp != nil {
				ctx, cancel := context.WithTimeout(t.Context(), time.Second)
				defer cancel()
				_ = exp.Shutdown(ctx)
			}
		})
	}
}

func envName(env map[string]string) string {
	kv := make([]string, 0, len(env))
	for k, v := range env {
		kv = append(kv, strings.TrimPrefix(k, "OTEL_")+"="+v)
	}
	sort.Strings(kv)
	if len(kv) == 0 {
		return "unset"
	}
	return strings.Join(kv, ",")
}
