package events_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/freezeframe/freezeframe/pkg/events"
)

func TestFilterSubjects(t *testing.T) {
	tests := []struct {
		name   string
		filter events.Filter
		want   []string
	}{
		{"everything", events.Filter{}, []string{"freezeframe.backup.*.*.*.*.*.*"}},
		{"failures", events.Filter{Kinds: []events.Kind{events.KindFailed}}, []string{"freezeframe.backup.failed.*.*.*.*.*"}},
		{"one workload", events.Filter{Cluster: "prod", Namespace: "shop", WorkloadKind: "sts", Name: "db.main"}, []string{"freezeframe.backup.*.prod.shop.statefulset.db_main.*"}},
		{"one backup, two kinds", events.Filter{BackupID: "bk-1", Kinds: []events.Kind{events.KindResumed, events.KindFailed}},
			[]string{"freezeframe.backup.resumed.*.*.*.*.bk-1", "freezeframe.backup.failed.*.*.*.*.bk-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.filter.Subjects()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
	for _, bad := range []events.Filter{{WorkloadKind: "cronjob"}, {Kinds: []events.Kind{"exploded"}}, {BackupID: "a.b"}} {
		if _, err := bad.Subjects(); err == nil {
			t.Errorf("filter %+v accepted", bad)
		}
	}
}

func TestCodecRoundTripAndPercentEncoding(t *testing.T) {
	ev, err := events.NewEvent("/freezeframe/test", &events.BackupFailed{
		BackupRef: events.BackupRef{BackupID: "bk-enc", Workload: redis}, Step: events.StepQuiesce, Reason: `exit 3: "lock" ✗`,
	})
	if err != nil {
		t.Fatal(err)
	}
	ev.CloudEvent.SetSubject(`shop/deployment/redis "x" 100% ✗`)
	msg, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get("ce-subject"); got != "shop/deployment/redis%20%22x%22%20100%25%20%E2%9C%97" {
		t.Errorf("ce-subject header %q is not percent-encoded", got)
	}
	back, err := events.Decode(msg.Header, msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if back.CloudEvent.Subject() != `shop/deployment/redis "x" 100% ✗` || back.Payload.(*events.BackupFailed).Reason != `exit 3: "lock" ✗` {
		t.Errorf("round trip changed the event: %s %+v", back.CloudEvent.Subject(), back.Payload)
	}
	if back.CloudEvent.ID() != "dev.shop.deployment.redis_cache.bk-enc.failed.quiesce" {
		t.Errorf("id %q", back.CloudEvent.ID())
	}
}

func TestDecodeStructuredMode(t *testing.T) {
	ev, err := events.NewEvent("/other-sdk", &events.BackupRequested{BackupRef: events.BackupRef{BackupID: "bk-s", Workload: redis}, MaxFreeze: events.Duration(30 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(ev.CloudEvent)
	if err != nil {
		t.Fatal(err)
	}
	back, err := events.Decode(nats.Header{"Content-Type": {"application/cloudevents+json"}}, body)
	if err != nil {
		t.Fatal(err)
	}
	if r := back.Payload.(*events.BackupRequested); r.MaxFreeze.Std() != 30*time.Second || r.BackupID != "bk-s" {
		t.Errorf("payload %+v", r)
	}
}

func TestDecodeRejects(t *testing.T) {
	ok := func() nats.Header {
		return nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"x"}, "ce-source": {"/x"}, "ce-type": {events.TypeResumed}}
	}
	valid := `{"backupId":"bk-1","workload":{"cluster":"dev","namespace":"shop","kind":"Deployment","name":"redis"},"reason":"snapshotted"}`
	tests := []struct {
		name    string
		header  func() nats.Header
		data    string
		wantErr error
	}{
		{"no specversion", func() nats.Header { h := ok(); delete(h, "ce-specversion"); return h }, valid, events.ErrUndecodable},
		{"unknown type", func() nats.Header { h := ok(); h["ce-type"] = []string{"io.freezeframe.backup.exploded.v1"}; return h }, valid, events.ErrUnknownType},
		{"bad json", ok, `{`, events.ErrUndecodable},
		{"invalid payload", ok, `{"backupId":"bk-1"}`, events.ErrUndecodable},
		{"backupid mismatch", func() nats.Header { h := ok(); h["ce-backupid"] = []string{"bk-2"}; return h }, valid, events.ErrUndecodable},
		{"bad time", func() nats.Header { h := ok(); h["ce-time"] = []string{"yesterday"}; return h }, valid, events.ErrUndecodable},
		{"no id", func() nats.Header { h := ok(); delete(h, "ce-id"); return h }, valid, events.ErrUndecodable},
		{"bad source", func() nats.Header { h := ok(); h["ce-source"] = []string{"%zz"}; return h }, valid, events.ErrUndecodable},
		{"bad content type", func() nats.Header { h := ok(); h["Content-Type"] = []string{"a/b; ="}; return h }, valid, events.ErrUndecodable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := events.Decode(tt.header(), []byte(tt.data))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if !events.IsPermanent(err) {
				t.Fatalf("decode error %v is not permanent", err)
			}
		})
	}
	if _, err := events.Decode(ok(), []byte(valid)); err != nil {
		t.Fatalf("valid event rejected: %v", err)
	}
}

// Sources are parsed once and kept, up to a bound; past it, and for a bad
// source, every event still gets its own source or a clear error.
func TestSourcesBeyondTheCacheAndBadSources(t *testing.T) {
	for i := range 200 {
		source := fmt.Sprintf("/freezeframe/replica-%d", i)
		ev, err := events.NewEvent(source, &events.BackupRequested{BackupRef: events.BackupRef{BackupID: "bk-src", Workload: redis}, RequestedBy: "test"})
		if err != nil {
			t.Fatal(err)
		}
		msg, err := events.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := events.Decode(msg.Header, msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		if got.CloudEvent.Source() != source || ev.CloudEvent.Source() != source {
			t.Fatalf("event %d: source %q, decoded %q, want %q", i, ev.CloudEvent.Source(), got.CloudEvent.Source(), source)
		}
	}
	_, err := events.NewEvent("%zz", &events.BackupRequested{BackupRef: events.BackupRef{BackupID: "bk-src", Workload: redis}, RequestedBy: "test"})
	if err == nil || !strings.Contains(err.Error(), `source "%zz"`) {
		t.Fatalf("NewEvent with source %%zz: %v, want an error naming the source", err)
	}
}
