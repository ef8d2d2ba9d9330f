package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// fuzzHeader reads headers written one per line as "name: value"; a name
// may repeat. It is how the fuzz corpus spells a message's headers.
func fuzzHeader(text string) nats.Header {
	h := nats.Header{}
	for line := range strings.Lines(text) {
		name, value, ok := strings.Cut(strings.TrimSuffix(line, "\n"), ":")
		if !ok || name == "" {
			continue
		}
		h[name] = append(h[name], strings.TrimPrefix(value, " "))
	}
	return h
}

// headerText is the inverse of fuzzHeader, for seeds.
func headerText(h nats.Header) string {
	var b strings.Builder
	for name, vals := range h {
		for _, v := range vals {
			b.WriteString(name + ": " + v + "\n")
		}
	}
	return b.String()
}

// fuzzSeeds are the messages every decode fuzz run starts from: a valid
// event of each kind in both content modes, and the hostile ones of the
// stream test.
func fuzzSeeds(t testing.TB) []*nats.Msg {
	var out []*nats.Msg
	for _, k := range events.Kinds() {
		m := encodePayload(t, validPayload(k, events.BackupRef{BackupID: "bk-fuzz", Workload: redis}))
		out = append(out, m)
		ev, err := events.Decode(m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		body, err := json.Marshal(ev.CloudEvent)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &nats.Msg{Subject: m.Subject, Header: nats.Header{"Content-Type": {"application/cloudevents+json"}}, Data: body})
		for _, h := range hostileMessages(t, k) {
			if len(h.msg.Data) < 4096 {
				out = append(out, h.msg)
			}
		}
	}
	return out
}

// FuzzDecode feeds DecodeMessage arbitrary subjects, headers and payloads.
// It must never panic; an error comes with a zero Event and is permanent;
// an event it accepts is valid, matches its subject, and survives
// Encode and DecodeMessage unchanged.
func FuzzDecode(f *testing.F) {
	for _, m := range fuzzSeeds(f) {
		f.Add(m.Subject, headerText(m.Header), m.Data)
	}
	f.Fuzz(func(t *testing.T, subject, headers string, data []byte) {
		h := fuzzHeader(headers)
		ev, err := events.DecodeMessage(subject, h, data)
		if err != nil {
			if ev.Payload != nil || ev.CloudEvent.Context != nil || ev.CloudEvent.DataEncoded != nil {
				t.Fatalf("error %v came with an event: %+v", err, ev)
			}
			if !events.IsPermanent(err) || !(errors.Is(err, events.ErrUndecodable) || errors.Is(err, events.ErrUnknownType)) {
				t.Fatalf("error %v is neither a permanent ErrUndecodable nor ErrUnknownType", err)
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if ev.Payload == nil {
			t.Fatal("nil payload without an error")
		}
		if err := ev.Payload.Validate(); err != nil {
			t.Fatalf("accepted an invalid payload: %v", err)
		}
		if ev.Payload.EventType() != ev.CloudEvent.Type() || ev.Kind() == "" {
			t.Fatalf("payload %T for type %q", ev.Payload, ev.CloudEvent.Type())
		}
		k, ref, err := events.ParseSubject(subject)
		if err != nil {
			t.Fatalf("accepted on a subject that does not parse: %v", err)
		}
		wantKind, _ := events.NormalizeKind(ev.Workload().Kind)
		got := ev.Payload.Ref()
		got.Workload.Kind = wantKind
		if k != ev.Kind() || ref != got {
			t.Fatalf("accepted %s of %+v on subject %s", ev.Kind(), got, subject)
		}
		if plain, err := events.Decode(h, data); err != nil || plain.CloudEvent.ID() != ev.CloudEvent.ID() {
			t.Fatalf("Decode without the subject: %v", err)
		}

		m, err := events.Encode(ev)
		if err != nil {
			t.Fatalf("accepted event does not encode: %v", err)
		}
		back, err := events.DecodeMessage(m.Subject, m.Header, m.Data)
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v\nheaders %v", err, m.Header)
		}
		a, b := ev.CloudEvent, back.CloudEvent
		if a.ID() != b.ID() || a.Source() != b.Source() || a.Type() != b.Type() || a.Subject() != b.Subject() ||
			a.DataSchema() != b.DataSchema() || a.DataContentType() != b.DataContentType() || !a.Time().Equal(b.Time()) {
			t.Fatalf("round trip changed the context:\n%s\n%s", a.Context, b.Context)
		}
		if !bytes.Equal(a.Data(), b.Data()) {
			t.Fatalf("round trip changed the data: %q → %q", a.Data(), b.Data())
		}
		ae, be := a.Extensions(), b.Extensions()
		if len(ae) != len(be) {
			t.Fatalf("round trip changed the extensions: %v → %v", ae, be)
		}
		for name, v := range ae {
			want, err := types.Format(v)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := types.Format(be[name]); err != nil || got != want {
				t.Fatalf("extension %s: %q → %q", name, want, got)
			}
		}
		pa, _ := json.Marshal(ev.Payload)
		pb, _ := json.Marshal(back.Payload)
		if !bytes.Equal(pa, pb) {
			t.Fatalf("round trip changed the payload:\n%s\n%s", pa, pb)
		}
	})
}

// FuzzParseSubject parses arbitrary subjects, and builds subjects from
// arbitrary parts. ParseSubject never panics, its errors come with zero
// values, and what it accepts is valid and reads back the same from the
// subject Subject writes; every valid backup's subject parses.
func FuzzParseSubject(f *testing.F) {
	for i, k := range events.Kinds() {
		s := events.Subject(k, events.BackupRef{BackupID: "bk-1", Workload: redis})
		f.Add(s, uint8(i), "prod", "shop", "sts", "db.main", "bk_2")
	}
	f.Add("freezeframe.backup.failed.prod.db.sts.pg.b", uint8(0), "a", "b", "Deployment", "c", "d")
	f.Add("freezeframe.backup.quiesced.dev.shop.deployment.redis.bk-1.extra", uint8(3), "x", "y", "deploy", "z", "-")
	f.Add("freezeframe.backup.*.*.*.*.*.>", uint8(9), "", "", "", "", "")
	f.Fuzz(func(t *testing.T, subject string, kindIdx uint8, cluster, namespace, workloadKind, name, backupID string) {
		k, ref, err := events.ParseSubject(subject)
		if err != nil {
			if !errors.Is(err, events.ErrBadSubject) || k != "" || ref != (events.BackupRef{}) {
				t.Fatalf("ParseSubject(%q) = %q, %+v, %v", subject, k, ref, err)
			}
		} else {
			if err := ref.Workload.Validate(); err != nil {
				t.Fatalf("ParseSubject(%q) accepted an invalid workload: %v", subject, err)
			}
			if err := events.ValidateBackupID(ref.BackupID); err != nil {
				t.Fatalf("ParseSubject(%q) accepted an invalid backup id: %v", subject, err)
			}
			again := events.Subject(k, ref)
			k2, ref2, err := events.ParseSubject(again)
			if err != nil || k2 != k || ref2 != ref {
				t.Fatalf("%q → %s %+v → %q → %s %+v %v", subject, k, ref, again, k2, ref2, err)
			}
			// Equal unless the subject spelled the workload kind short.
			tokens := strings.Split(subject, ".")
			if tokens[5] == strings.ToLower(ref.Workload.Kind) && again != subject {
				t.Fatalf("%q written back as %q", subject, again)
			}
		}

		kinds := events.Kinds()
		built := events.BackupRef{BackupID: backupID, Workload: events.Workload{Cluster: cluster, Namespace: namespace, Kind: workloadKind, Name: name}}
		bk := kinds[int(kindIdx)%len(kinds)]
		if built.Workload.Validate() != nil || events.ValidateBackupID(backupID) != nil {
			return
		}
		k, ref, err = events.ParseSubject(events.Subject(bk, built))
		if err != nil {
			t.Fatalf("subject of valid %s %+v does not parse: %v", bk, built, err)
		}
		built.Workload.Kind, _ = events.NormalizeKind(built.Workload.Kind)
		if k != bk || ref != built {
			t.Fatalf("%s %+v parsed back as %s %+v", bk, built, k, ref)
		}
	})
}
