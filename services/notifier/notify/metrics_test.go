package notify_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/services/notifier/notify"
)

// backupsCounted reads freezeframe_backups_total by "result/step".
func backupsCounted(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != notify.MetricBackups {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				r, _ := dp.Attributes.Value(attribute.Key("result"))
				s, _ := dp.Attributes.Value(attribute.Key("step"))
				out[r.AsString()+"/"+s.AsString()] = dp.Value
			}
		}
	}
	return out
}

// A backup counts once: a success when both its Resumed and its
// SnapshotReady are in, in either order; a failure at its terminal event.
func TestBackupsCountedOnce(t *testing.T) {
	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	pub := eventstest.NewPipeline(js)
	reader := sdkmetric.NewManualReader()
	cfg := notify.Config{Common: service.Common{ShutdownTimeout: 5 * time.Second, Runtime: service.Runtime{Meters: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))}}}
	svc := notify.New(cfg, &recorder{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, js) }()
	t.Cleanup(func() { cancel(); <-done })

	publish := func(p events.Payload) {
		t.Helper()
		if _, _, err := pub.Publish(t.Context(), p); err != nil {
			t.Fatal(err)
		}
	}
	ready := func(id string) *events.SnapshotReady {
		return &events.SnapshotReady{BackupRef: ref(id), Mode: events.SnapshotModeVolume, Snapshots: []events.Snapshot{{Name: "s", PVC: "data"}}}
	}
	resumed := func(id string, ok bool) *events.Resumed {
		reason := events.ResumeAfterSnapshot
		if !ok {
			reason = events.ResumeOperator
		}
		return &events.Resumed{BackupRef: ref(id), Reason: reason, Succeeded: ok, ResumedAt: time.Now()}
	}
	a, b, c, d := events.NewBackupID(), events.NewBackupID(), events.NewBackupID(), events.NewBackupID()
	publish(resumed(a, true)) // resumed, then ready
	publish(ready(a))
	publish(ready(b)) // ready first
	publish(resumed(b, true))
	publish(&events.BackupFailed{BackupRef: ref(c), Step: events.StepFreeze, Reason: "an operator forced the resume", ResumePending: true})
	publish(resumed(c, false))
	publish(&events.BackupFailed{BackupRef: ref(d), Step: events.StepRequest, Reason: "no blueprint"})
	eventstest.Eventually(t, 10*time.Second, "every backup counted", func() bool {
		got := backupsCounted(t, reader)
		return got["succeeded/"] == 2 && got["failed/freeze"] == 1 && got["failed/request"] == 1
	})
	eventstest.Consistently(t, 300*time.Millisecond, "nothing counted twice", func() bool {
		got := backupsCounted(t, reader)
		return got["succeeded/"] == 2 && got["failed/freeze"] == 1 && got["failed/request"] == 1 && len(got) == 3
	})
}
