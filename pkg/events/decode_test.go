package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

// encoded is a valid Resumed of backup bk-1 on its subject.
func encoded(t *testing.T) *nats.Msg {
	t.Helper()
	ev, err := eventstest.NewEvent(&events.Resumed{BackupRef: events.BackupRef{BackupID: "bk-1", Workload: redis}, Reason: events.ResumeAfterSnapshot, Succeeded: true})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestDecodeMessageChecksTheSubject(t *testing.T) {
	tests := []struct {
		name    string
		change  func(m *nats.Msg)
		wantErr []error
	}{
		{"as published", func(*nats.Msg) {}, nil},
		{"type of another kind than the subject's", func(m *nats.Msg) {
			m.Subject = strings.Replace(m.Subject, ".resumed.", ".quiesced.", 1)
		}, []error{events.ErrUndecodable, events.ErrSubjectMismatch}},
		{"payload of another backup than the subject's", func(m *nats.Msg) {
			m.Subject = strings.Replace(m.Subject, ".bk-1", ".bk-2", 1)
		}, []error{events.ErrUndecodable, events.ErrSubjectMismatch}},
		{"payload of another workload", func(m *nats.Msg) {
			m.Subject = strings.Replace(m.Subject, ".redis_cache.", ".postgres.", 1)
		}, []error{events.ErrUndecodable, events.ErrSubjectMismatch}},
		{"payload of another namespace", func(m *nats.Msg) {
			m.Subject = strings.Replace(m.Subject, ".shop.", ".bank.", 1)
		}, []error{events.ErrUndecodable, events.ErrSubjectMismatch}},
		{"payload of another workload kind", func(m *nats.Msg) {
			m.Subject = strings.Replace(m.Subject, ".deployment.", ".statefulset.", 1)
		}, []error{events.ErrUndecodable, events.ErrSubjectMismatch}},
		{"forged backup id in the payload", func(m *nats.Msg) {
			m.Data = []byte(strings.Replace(string(m.Data), `"bk-1"`, `"bk-2"`, 1))
			m.Header.Set("ce-backupid", "bk-2")
		}, []error{events.ErrUndecodable, events.ErrSubjectMismatch}},
		{"forged cluster extension", func(m *nats.Msg) { m.Header.Set("ce-cluster", "prod") }, []error{events.ErrUndecodable}},
		{"not a backup event subject", func(m *nats.Msg) { m.Subject = "freezeframe.api.backup.dev" }, []error{events.ErrUndecodable, events.ErrBadSubject}},
		{"unknown specversion", func(m *nats.Msg) { m.Header.Set("ce-specversion", "2.0") }, []error{events.ErrUndecodable, events.ErrUnknownVersion}},
		{"unknown type version", func(m *nats.Msg) { m.Header.Set("ce-type", "io.freezeframe.backup.resumed.v2") }, []error{events.ErrUnknownType, events.ErrUnknownVersion}},
		{"attribute given twice", func(m *nats.Msg) { m.Header["CE-Type"] = []string{events.TypeQuiesced} }, []error{events.ErrUndecodable}},
		{"attribute with two values", func(m *nats.Msg) { m.Header.Add("ce-type", events.TypeQuiesced) }, []error{events.ErrUndecodable}},
		{"extension given twice", func(m *nats.Msg) { m.Header["Ce-Backupid"] = []string{"bk-1"} }, []error{events.ErrUndecodable}},
		{"resumed from a source other than the hooker", func(m *nats.Msg) { m.Header.Set("ce-source", events.SourceCLI) }, []error{events.ErrUndecodable, events.ErrForbiddenSource}},
		{"resumed from another service", func(m *nats.Msg) { m.Header.Set("ce-source", events.RoleSnapshotter.Source()) }, []error{events.ErrUndecodable, events.ErrForbiddenSource}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := encoded(t)
			tt.change(m)
			ev, err := events.DecodeMessage(m.Subject, m.Header, m.Data)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if ev.BackupID() != "bk-1" || ev.Kind() != events.KindResumed {
					t.Fatalf("decoded %s %s", ev.Kind(), ev.BackupID())
				}
				return
			}
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("err %v, want %v", err, want)
				}
			}
			if !events.IsPermanent(err) {
				t.Errorf("err %v is not permanent", err)
			}
			if ev.Payload != nil || ev.CloudEvent.Context != nil {
				t.Errorf("an event came back with the error: %+v", ev)
			}
		})
	}
}

func TestDecodeNamesTheVersionItDoesNotRead(t *testing.T) {
	m := encoded(t)
	m.Header.Set("ce-type", "io.freezeframe.backup.resumed.v2")
	_, err := events.Decode(m.Header, m.Data)
	if err == nil || !strings.Contains(err.Error(), "v2 of io.freezeframe.backup.resumed, this build reads v1") {
		t.Fatalf("err %v, want one naming both versions", err)
	}
	// Not a version of a known type: unknown type, without a version story.
	m.Header.Set("ce-type", "com.example.other.v1")
	if _, err := events.Decode(m.Header, m.Data); !errors.Is(err, events.ErrUnknownType) || errors.Is(err, events.ErrUnknownVersion) {
		t.Fatalf("err %v, want ErrUnknownType alone", err)
	}
}

func TestDecodeStructuredRefusesOtherSpecVersions(t *testing.T) {
	m := encoded(t)
	ev, err := events.Decode(m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(ev.CloudEvent)
	if err != nil {
		t.Fatal(err)
	}
	h := nats.Header{"Content-Type": {"application/cloudevents+json"}}
	if _, err := events.DecodeMessage(m.Subject, h, body); err != nil {
		t.Fatalf("structured 1.0: %v", err)
	}
	old := strings.Replace(string(body), `"specversion":"1.0"`, `"specversion":"0.3"`, 1)
	if old == string(body) {
		t.Fatalf("no specversion in %s", body)
	}
	if _, err := events.DecodeMessage(m.Subject, h, []byte(old)); !errors.Is(err, events.ErrUnknownVersion) {
		t.Fatalf("structured 0.3: err %v, want ErrUnknownVersion", err)
	}
}

func TestPublisherRefusesEventsOverTheLimit(t *testing.T) {
	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	huge := &events.BackupFailed{BackupRef: events.BackupRef{BackupID: "bk-big", Workload: redis}, Step: events.StepQuiesce, Reason: strings.Repeat("x", events.DefaultMaxEventSize)}
	_, _, err := eventstest.NewPipeline(js).Publish(t.Context(), huge)
	if !errors.Is(err, events.ErrTooLarge) || !events.IsPermanent(err) {
		t.Fatalf("err %v, want a permanent ErrTooLarge", err)
	}
	small := &events.BackupFailed{BackupRef: events.BackupRef{BackupID: "bk-small", Workload: redis}, Step: events.StepQuiesce, Reason: strings.Repeat("x", 600)}
	if _, _, err := eventstest.NewPipeline(js, events.WithMaxEventSize(512)).Publish(t.Context(), small); !errors.Is(err, events.ErrTooLarge) {
		t.Fatalf("err %v with a 512-byte limit, want ErrTooLarge", err)
	}
	if _, _, err := eventstest.NewPipeline(js).Publish(t.Context(), small); err != nil {
		t.Fatalf("a 1 KiB event under the default limit: %v", err)
	}
	s, err := js.Stream(t.Context(), events.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("stream holds %d events, want only the one under the limit", n)
	}
}
