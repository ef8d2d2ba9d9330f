package notify_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/notifier/notify"
)

func TestLogNotifier(t *testing.T) {
	tests := []struct {
		name    string
		payload events.Payload
		want    map[string]any // nil: nothing is logged
	}{
		{
			name:    "succeeded",
			payload: &events.Resumed{BackupRef: ref("bk-1"), Reason: events.ResumeAfterSnapshot, Succeeded: true, FrozenFor: events.Duration(1500 * time.Millisecond)},
			want: map[string]any{"level": "INFO", "msg": "backup succeeded", "backup_id": "bk-1", "workload": redis.String(),
				"outcome": "succeeded", "reason": events.ResumeAfterSnapshot, "frozen_for": "1.5s"},
		},
		{
			name:    "resumed after a failure",
			payload: &events.Resumed{BackupRef: ref("bk-2"), Reason: events.ResumeAfterFailure, FrozenFor: events.Duration(2 * time.Second)},
			want: map[string]any{"level": "WARN", "msg": "backup failed", "backup_id": "bk-2",
				"outcome": "failed", "reason": events.ResumeAfterFailure, "frozen_for": "2s"},
		},
		{
			name:    "forced unlock",
			payload: &events.Resumed{BackupRef: ref("bk-3"), Reason: events.ResumeStaleLock, FrozenFor: events.Duration(10 * time.Minute)},
			want: map[string]any{"level": "WARN", "msg": "backup failed", "outcome": "failed",
				"reason": events.ResumeStaleLock, "frozen_for": "10m0s", "forced_unlock": true},
		},
		{
			name:    "refused, nothing frozen",
			payload: &events.BackupFailed{BackupRef: ref("bk-4"), Step: events.StepRequest, Reason: "workload not found"},
			want: map[string]any{"level": "WARN", "msg": "backup failed", "backup_id": "bk-4",
				"outcome": "failed", "step": events.StepRequest, "reason": "workload not found", "frozen_for": nil},
		},
		{
			name:    "failure with a resume to follow",
			payload: &events.BackupFailed{BackupRef: ref("bk-5"), Step: events.StepSnapshot, Reason: "timeout", ResumePending: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			n := notify.NewLogNotifier(slog.New(slog.NewJSONHandler(&buf, nil)))
			ev, err := eventstest.NewEvent(tt.payload)
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Notify(t.Context(), ev); err != nil {
				t.Fatal(err)
			}
			if tt.want == nil {
				if buf.Len() != 0 {
					t.Errorf("logged %s for a non-terminal event", buf.String())
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("one JSON record expected, got %q: %v", buf.String(), err)
			}
			for k, want := range tt.want {
				if got[k] != want {
					t.Errorf("%s = %v, want %v (record %s)", k, got[k], want, buf.String())
				}
			}
		})
	}
}
