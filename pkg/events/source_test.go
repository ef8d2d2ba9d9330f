package events_test

import (
	"errors"
	"testing"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

// Every role's source passes CheckSource for exactly the kinds the access
// table lets it emit (the CLI's source for what a requester or an operator
// may send), and DecodeMessage agrees.
func TestCheckSourceFollowsTheAccessTable(t *testing.T) {
	ref := events.BackupRef{BackupID: "bk-src", Workload: redis}
	sources := map[string]func(events.Kind) bool{
		events.SourceClient: func(k events.Kind) bool {
			return events.RoleRequester.MayEmit(k) || events.RoleOperator.MayEmit(k)
		},
		"/forged":                 func(events.Kind) bool { return false },
		"/freezeframe/hooker/../": func(events.Kind) bool { return false },
	}
	for _, r := range events.Roles() {
		if r == events.RoleRequester || r == events.RoleOperator {
			sources[r.Source()] = sources[events.SourceClient] // one source, the CLI's
			continue
		}
		sources[r.Source()] = r.MayEmit
	}
	for source, allowed := range sources {
		for _, k := range events.Kinds() {
			ev, err := events.NewEvent(source, validPayload(k, ref))
			if err != nil {
				t.Fatal(err)
			}
			err = events.CheckSource(ev)
			if allowed(k) != (err == nil) {
				t.Errorf("%s from %s: CheckSource = %v, want allowed=%v", k, source, err, allowed(k))
			}
			m, err := events.Encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			_, decodeErr := events.DecodeMessage(m.Subject, m.Header, m.Data)
			if allowed(k) != (decodeErr == nil) || (decodeErr != nil && !errors.Is(decodeErr, events.ErrForbiddenSource)) {
				t.Errorf("%s from %s: DecodeMessage = %v, want allowed=%v", k, source, decodeErr, allowed(k))
			}
		}
	}
}

// The refusal names the kind, the source and who may emit it, and is
// permanent: redelivering a forged event cannot make it genuine.
func TestForbiddenSourceSaysWhoMayEmit(t *testing.T) {
	ev, err := events.NewEvent("/x", &events.Resumed{BackupRef: events.BackupRef{BackupID: "bk-1", Workload: redis}, Reason: events.ResumeAfterSnapshot, Succeeded: true})
	if err != nil {
		t.Fatal(err)
	}
	err = events.CheckSource(ev)
	var se *events.SourceError
	if !errors.As(err, &se) || se.Kind != events.KindResumed || se.Source != "/x" {
		t.Fatalf("CheckSource = %#v", err)
	}
	const want = "event kind resumed from source /x: only /freezeframe/hooker may emit it (event dev.shop.deployment.redis_cache.bk-1.resumed)"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if !events.IsPermanent(err) || !errors.Is(err, events.ErrUndecodable) {
		t.Errorf("error %v is not a permanent ErrUndecodable", err)
	}
}

// A publisher speaking for a role that may not emit a kind is refused
// before anything reaches the stream.
func TestPublisherRefusesKindsItsSourceMayNotEmit(t *testing.T) {
	_, js := eventstest.NewServer(t).JetStream()
	ref := events.BackupRef{BackupID: "bk-cli", Workload: redis}
	_, _, err := events.NewPublisher(js, events.RoleOperator.Source()).Publish(t.Context(), &events.Resumed{BackupRef: ref, Reason: events.ResumeAfterSnapshot, Succeeded: true})
	if !errors.Is(err, events.ErrForbiddenSource) {
		t.Fatalf("publish Resumed as the CLI: %v, want ErrForbiddenSource", err)
	}
	// Counted on the stream itself: the readers would hide a forged event.
	stream, err := js.Stream(t.Context(), events.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("stream holds %d messages, want none", info.State.Msgs)
	}
	if _, _, err := events.NewPublisher(js, events.RoleOperator.Source()).Publish(t.Context(), &events.UnlockRequested{BackupRef: ref, Reason: events.ResumeOperator}); err != nil {
		t.Fatalf("publish UnlockRequested as an operator: %v", err)
	}
}
