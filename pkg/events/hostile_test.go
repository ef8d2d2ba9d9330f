package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

// validPayload is a valid payload of kind k for ref.
func validPayload(k events.Kind, ref events.BackupRef) events.Payload {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	snaps := []events.Snapshot{{Name: "snap-data", Namespace: ref.Workload.Namespace, PVC: "data", CutAt: at, ReadyAt: at}}
	switch k {
	case events.KindRequested:
		return &events.BackupRequested{BackupRef: ref, RequestedBy: "test"}
	case events.KindQuiesced:
		return &events.Quiesced{BackupRef: ref, QuiescedAt: at, Blueprint: "bp"}
	case events.KindSnapshotted:
		return &events.Snapshotted{BackupRef: ref, Mode: events.SnapshotModeVolume, Snapshots: snaps}
	case events.KindSnapshotReady:
		return &events.SnapshotReady{BackupRef: ref, Mode: events.SnapshotModeVolume, Snapshots: snaps}
	case events.KindResumed:
		return &events.Resumed{BackupRef: ref, ResumedAt: at, Reason: events.ResumeAfterSnapshot, Succeeded: true}
	case events.KindFailed:
		return &events.BackupFailed{BackupRef: ref, Step: events.StepSnapshot, Reason: "boom"}
	case events.KindUnlockRequested:
		return &events.UnlockRequested{BackupRef: ref, Reason: "test"}
	case events.KindRestoreRequested:
		return &events.RestoreRequested{BackupRef: ref, RestoreID: "rs-1", TargetNamespace: "restored",
			Volumes: []events.RestoreVolume{{PVC: "data", Snapshot: "snap-data", Claim: "data"}}}
	case events.KindRestored:
		return &events.Restored{BackupRef: ref, RestoreID: "rs-1", TargetNamespace: "restored", Consistent: true,
			Claims: []events.RestoredClaim{{Namespace: "restored", Name: "data", PVC: "data", Snapshot: "snap-data", Volume: "pv-1", Capacity: "1Gi", BoundAt: at}}}
	case events.KindRestoreFailed:
		return &events.RestoreFailed{BackupRef: ref, RestoreID: "rs-1", Reason: "boom"}
	case events.KindRestoreStep:
		return &events.RestoreProgress{BackupRef: ref, RestoreID: "rs-1", RestoreStep: events.RestoreStep{Step: events.RestoreStepScaleDown, Detail: "to 0", At: at}}
	}
	panic("no payload for kind " + string(k))
}

func encodePayload(t testing.TB, p events.Payload) *nats.Msg {
	t.Helper()
	ev, err := eventstest.NewEvent(p)
	if err != nil {
		t.Fatal(err)
	}
	m, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// hostile is a message no handler may see, and the words its termination
// reason must contain.
type hostile struct {
	name   string
	msg    *nats.Msg
	reason string
}

// hostileMessages are, for kind k, messages on k's subjects that must be
// terminated unread: each names a backup of its own, "bk-<kind>-<n>".
func hostileMessages(t testing.TB, k events.Kind) []hostile {
	ref := func(n int) events.BackupRef {
		return events.BackupRef{BackupID: fmt.Sprintf("bk-%s-%d", k, n), Workload: redis}
	}
	other := events.KindQuiesced
	if k == other {
		other = events.KindResumed
	}
	var out []hostile
	add := func(name, reason string, m *nats.Msg) { out = append(out, hostile{name: name, msg: m, reason: reason}) }

	// An event of another kind, on this kind's subject.
	m := encodePayload(t, validPayload(other, ref(0)))
	m.Subject = events.Subject(k, ref(0))
	add("type of another kind", "does not match its subject", m)

	// A valid event padded past the limit (JSON allows the whitespace).
	m = encodePayload(t, validPayload(k, ref(1)))
	m.Data = append(m.Data, bytes.Repeat([]byte(" "), events.DefaultMaxEventSize)...)
	add("oversized", "event too large", m)

	// A type version this build does not read.
	m = encodePayload(t, validPayload(k, ref(2)))
	m.Header.Set("ce-type", strings.TrimSuffix(m.Header.Get("ce-type"), ".v1")+".v2")
	add("unknown type version", "unknown version", m)

	// A CloudEvents version this build does not read.
	m = encodePayload(t, validPayload(k, ref(3)))
	m.Header.Set("ce-specversion", "2.0")
	add("unknown specversion", "unknown version", m)

	// Garbage where the payload should be.
	m = encodePayload(t, validPayload(k, ref(4)))
	m.Data = []byte(`{"backupId": "bk-` + string(k) + `-4", "workload": [}`)
	add("garbage JSON", "undecodable event", m)

	// A payload of another backup, its extension forged to match, on this
	// backup's subject.
	forged := ref(5)
	forged.BackupID = "bk-forged-" + string(k)
	m = encodePayload(t, validPayload(k, forged))
	m.Subject = events.Subject(k, ref(5))
	add("forged backup id", "does not match its subject", m)

	// A payload of another workload on this workload's subject.
	elsewhere := ref(6)
	elsewhere.Workload.Namespace = "bank"
	m = encodePayload(t, validPayload(k, elsewhere))
	m.Subject = events.Subject(k, ref(6))
	add("forged workload", "does not match its subject", m)

	// No headers at all.
	add("bare JSON", "undecodable event", &nats.Msg{Subject: events.Subject(k, ref(7)), Data: []byte(`{}`)})

	// An attribute given twice, to be read one way here and another elsewhere.
	m = encodePayload(t, validPayload(k, ref(8)))
	m.Header["CE-TYPE"] = []string{events.TypeBackupRequested}
	add("attribute given twice", "given twice", m)

	// A valid event from a source not allowed to emit its kind: the bus let
	// the publish through (no permissions, a too-wide grant); the reader
	// does not.
	m = encodePayload(t, validPayload(k, ref(9)))
	m.Header.Set("ce-source", "/forged")
	add("forbidden source", "from source /forged: only "+events.SourcesOf(k)[0], m)
	return out
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Every hostile message on every kind's consumer is terminated with a reason
// (the server's MSG_TERMINATED advisory carries it, the log says it), never
// reaches a handler and is never redelivered; valid events around them are
// handled. The client's Subscribe, List and Lookup read the same messages as
// errors, never as events.
func TestHostileEventsAreTerminatedOnEveryPath(t *testing.T) {
	srv := eventstest.NewServer(t)
	nc, js := srv.JetStream()

	type advisory struct {
		Consumer  string `json:"consumer"`
		StreamSeq uint64 `json:"stream_seq"`
		Reason    string `json:"reason"`
	}
	var (
		mu         sync.Mutex
		advisories = map[string]map[uint64]string{} // consumer → stream seq → reason
		handled    = map[events.Kind][]string{}
	)
	sub, err := nc.Subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED."+events.DefaultStream+".*", func(m *nats.Msg) {
		var a advisory
		if err := json.Unmarshal(m.Data, &a); err != nil {
			t.Errorf("advisory %s: %v", m.Data, err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if advisories[a.Consumer] == nil {
			advisories[a.Consumer] = map[uint64]string{}
		}
		advisories[a.Consumer][a.StreamSeq] = a.Reason
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	for _, k := range events.Kinds() {
		// AckWait short: a message left unsettled would be redelivered
		// within the test and show in NumRedelivered.
		c, err := events.NewConsumer(t.Context(), js, events.ConsumerConfig{Owned: true, Durable: "hostile-" + string(k), Kinds: []events.Kind{k}, AckWait: time.Second, MaxDeliver: 3},
			func(_ context.Context, ev events.Event) error {
				mu.Lock()
				defer mu.Unlock()
				handled[k] = append(handled[k], ev.BackupID())
				return nil
			}, log)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}

	// Every kind's hostile messages, then one valid event of that kind.
	pub := eventstest.NewPipeline(js)
	want := map[events.Kind]map[uint64]hostile{}
	total := 0
	for _, k := range events.Kinds() {
		want[k] = map[uint64]hostile{}
		for _, h := range hostileMessages(t, k) {
			ack, err := js.PublishMsg(t.Context(), h.msg)
			if err != nil {
				t.Fatalf("%s %s: %v", k, h.name, err)
			}
			want[k][ack.Sequence] = h
			total++
		}
		if _, _, err := pub.Publish(t.Context(), validPayload(k, events.BackupRef{BackupID: "bk-good-" + string(k), Workload: redis})); err != nil {
			t.Fatal(err)
		}
	}

	settled := func(k events.Kind) bool {
		cons, err := js.Consumer(t.Context(), events.DefaultStream, "hostile-"+string(k))
		if err != nil {
			t.Fatal(err)
		}
		info, err := cons.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return len(handled[k]) == 1 && len(advisories["hostile-"+string(k)]) == len(want[k]) &&
			info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0
	}
	for _, k := range events.Kinds() {
		eventstest.Eventually(t, 20*time.Second, string(k)+": every message settled, the valid one handled", func() bool { return settled(k) })
	}

	mu.Lock()
	for _, k := range events.Kinds() {
		if got := handled[k]; len(got) != 1 || got[0] != "bk-good-"+string(k) {
			t.Errorf("%s: handled %v, want only bk-good-%s", k, got, k)
		}
		got := advisories["hostile-"+string(k)]
		for seq, h := range want[k] {
			reason, ok := got[seq]
			switch {
			case !ok:
				t.Errorf("%s %s (seq %d): not terminated", k, h.name, seq)
			case !strings.Contains(reason, h.reason):
				t.Errorf("%s %s (seq %d): terminated with reason %q, want one saying %q", k, h.name, seq, reason, h.reason)
			}
		}
	}
	mu.Unlock()

	// The log gives each termination its reason.
	terminations, forged := 0, 0
	for line := range strings.Lines(logs.String()) {
		var rec struct {
			Msg, Reason, Subject string
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch rec.Msg {
		case "terminating message that is not a valid event":
			terminations++
			if rec.Reason == "" || rec.Reason == "forbidden-source" || rec.Subject == "" {
				t.Errorf("termination logged without reason or subject: %s", line)
			}
		case "terminating event from a source not allowed to emit it":
			terminations++
			forged++
			if rec.Reason != "forbidden-source" || rec.Subject == "" {
				t.Errorf("forged source logged without its reason or subject: %s", line)
			}
		}
	}
	if terminations != total || forged != len(events.Kinds()) {
		t.Errorf("%d terminations logged, %d of them for a forbidden source; want %d and %d", terminations, forged, total, len(events.Kinds()))
	}

	// The client reads the same stream: hostile messages come out as
	// errors, never as events (the oversized one is a valid event to a
	// reader without a consumer's limit).
	client, err := events.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	isGoodOrPadded := func(id string) bool {
		return strings.HasPrefix(id, "bk-good-") || strings.HasSuffix(id, "-1")
	}
	listed, err := client.List(t.Context(), events.Filter{}, events.SubscribeOptions{FromStart: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 2*len(events.Kinds()) {
		t.Errorf("List returned %d events, want %d", len(listed), 2*len(events.Kinds()))
	}
	for _, ev := range listed {
		if !isGoodOrPadded(ev.BackupID()) {
			t.Errorf("List returned hostile event %s of %s", ev.Kind(), ev.BackupID())
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	seen, errs := 0, 0
	for ev, err := range client.Subscribe(ctx, events.Filter{}, events.SubscribeOptions{FromStart: true}) {
		if ctx.Err() != nil {
			t.Fatalf("Subscribe: %d messages read, %d errors, before the deadline", seen, errs)
		}
		seen++
		if err != nil {
			errs++
			if ev.Payload != nil {
				t.Errorf("Subscribe yielded an event with its error %v", err)
			}
		} else if !isGoodOrPadded(ev.BackupID()) {
			t.Errorf("Subscribe yielded hostile event %s of %s", ev.Kind(), ev.BackupID())
		}
		if seen == total+len(events.Kinds()) {
			break
		}
	}
	if wantErrs := total - len(events.Kinds()); errs != wantErrs {
		t.Errorf("Subscribe yielded %d errors, want %d", errs, wantErrs)
	}
	for _, k := range events.Kinds() {
		for _, h := range want[k] {
			_, ref, err := events.ParseSubject(h.msg.Subject)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := events.Lookup(t.Context(), js, events.DefaultStream, k, ref)
			if h.reason == "event too large" {
				continue
			}
			if err == nil || !events.IsPermanent(err) || ev.Payload != nil {
				t.Errorf("Lookup of %s %s: %v, %+v; want a permanent error and no event", k, h.name, err, ev.Payload)
			}
		}
	}
}
