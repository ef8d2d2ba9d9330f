package notify_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/notifier/notify"
	"github.com/freezeframe/freezeframe/services/notifier/slack"
	"github.com/freezeframe/freezeframe/services/notifier/slack/slacktest"
)

const (
	token         = "xoxb-test-token-7f3a"
	webhookSecret = "hooksecret9c1e"
	teamsSecret   = "teamssecret41b2"
)

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func in(ns, id string) events.BackupRef {
	return events.BackupRef{BackupID: id, Workload: events.Workload{Cluster: "dev", Namespace: ns, Kind: events.KindStatefulSet, Name: "db"}}
}

// history publishes the events of a set of backups: every kind of ending.
func history(t *testing.T, pub *eventstest.Pipeline) {
	now := time.Now().UTC()
	ok := func(r events.BackupRef) []events.Payload {
		return []events.Payload{
			&events.BackupRequested{BackupRef: r, RequestedBy: "policy/nightly"},
			&events.Quiesced{BackupRef: r, QuiescedAt: now, Blueprint: "pg-hooks"},
			&events.Snapshotted{BackupRef: r, Mode: events.SnapshotModeVolume, Snapshots: []events.Snapshot{
				{Name: r.BackupID + "-data", Namespace: r.Workload.Namespace, PVC: "data-db-0", CutAt: now},
				{Name: r.BackupID + "-wal", Namespace: r.Workload.Namespace, PVC: "wal-db-0", CutAt: now},
			}},
			&events.Resumed{BackupRef: r, ResumedAt: now, Reason: events.ResumeAfterSnapshot, Succeeded: true, FrozenFor: events.Duration(1200 * time.Millisecond)},
		}
	}
	var all []events.Payload
	all = append(all, ok(in("shop", "bk-s1"))...)
	all = append(all,
		&events.BackupFailed{BackupRef: in("shop", "bk-s2"), Step: events.StepRequest, Reason: "StatefulSet shop/db has no blueprint"},
		&events.BackupRequested{BackupRef: in("shop", "bk-s3")},
		&events.Quiesced{BackupRef: in("shop", "bk-s3"), QuiescedAt: now, Blueprint: "pg-hooks"},
		&events.BackupFailed{BackupRef: in("shop", "bk-s3"), Step: events.StepSnapshot, Reason: "csi driver timed out", ResumePending: true},
		&events.Resumed{BackupRef: in("shop", "bk-s3"), ResumedAt: now, Reason: events.ResumeAfterFailure, FrozenFor: events.Duration(2 * time.Second)},
		&events.Quiesced{BackupRef: in("shop", "bk-s4"), QuiescedAt: now, Blueprint: "pg-hooks"},
		&events.UnlockRequested{BackupRef: in("shop", "bk-s4"), Reason: "lease of hooker-0 expired", Holder: "hooker-0", HolderGone: true, RequestedBy: "watchdog"},
		&events.Resumed{BackupRef: in("shop", "bk-s4"), ResumedAt: now, Reason: events.ResumeStaleLock, FrozenFor: events.Duration(10 * time.Minute)},
	)
	all = append(all, ok(in("shop", "bk-s5"))...)
	all = append(all, ok(in("payments", "bk-p1"))...)
	all = append(all, &events.BackupFailed{BackupRef: in("payments", "bk-p2"), Step: events.StepResolve, Reason: "blueprint pg-hooks not found"})
	all = append(all, ok(in("team-a", "bk-t1"))...)
	all = append(all, ok(in("team-b", "bk-t2"))...)
	publish(t, pub, all...)
}

func slackConfig(fake *slacktest.Server) notify.SlackConfig {
	return notify.SlackConfig{
		WebhookURL: slack.Secret(fake.Webhook("webhook", webhookSecret)),
		Token:      slack.Secret(token),
		Webhooks:   map[string]slack.Secret{"teams": slack.Secret(fake.Webhook("webhook:teams", teamsSecret))},
		Routes:     "payments=#payments/failures, team-*=webhook:teams",
		Notify:     "all",
	}
}

// replica builds one notifier replica's Slack side: its own client, hence
// its own pacing, as in separate processes.
func replica(t *testing.T, js jetstream.JetStream, fake *slacktest.Server, log *slog.Logger) notify.Notifier {
	t.Helper()
	router, err := notify.NewRouter(slackConfig(fake))
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := notify.OpenLedger(t.Context(), js, events.LedgerBucket)
	if err != nil {
		t.Fatal(err)
	}
	client := slack.NewClient(slack.Options{APIURL: fake.APIURL(), MinInterval: time.Second, MaxAttempts: 5,
		Backoff: func(int) time.Duration { return 100 * time.Millisecond }})
	return notify.NewSlackNotifier(router, client, ledger, events.NewStreamHistory(js, events.DefaultStream), log)
}

var backupInText = regexp.MustCompile(`Backup (bk-[a-z0-9]+)\.`)

// The contract: against a Slack that validates payloads, limits each
// destination to one message per second with 429 + Retry-After and fails
// once with a 500, two replicas post every notification exactly once, in
// order per backup, within the rate limit; a restart replaying the whole
// stream posts nothing again; secrets never reach the logs.
func TestSlackContract(t *testing.T) {
	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	fake := slacktest.NewServer(t, token)
	fake.Fail500(2)
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	history(t, eventstest.NewPipeline(js))
	run(t, js, replica(t, js, fake, log))
	run(t, js, replica(t, js, fake, log))

	want := map[string][]string{
		"webhook":       {"bk-s1", "bk-s2", "bk-s3", "bk-s4", "bk-s5"},
		"#payments":     {"bk-p2"}, // failures only: bk-p1 succeeded
		"webhook:teams": {"bk-t1", "bk-t2"},
	}
	waitPosts(t, fake, 8)
	waitSettled(t, js, 10)

	check := func(t *testing.T) {
		got := map[string][]string{}
		for _, p := range fake.Accepted() {
			m := backupInText.FindStringSubmatch(p.Message.Text)
			if m == nil {
				t.Fatalf("message without a backup id: %q", p.Message.Text)
			}
			got[p.Destination] = append(got[p.Destination], m[1])
		}
		for dest, ids := range want {
			g := slices.Clone(got[dest])
			slices.Sort(g)
			if !slices.Equal(g, ids) {
				t.Errorf("%s received %v, want each of %v exactly once", dest, got[dest], ids)
			}
		}
		if len(got) != len(want) {
			t.Errorf("destinations %v, want %v", got, want)
		}
	}
	check(t)

	// Within the rate limit, per destination.
	last := map[string]time.Time{}
	for _, p := range fake.Accepted() {
		if l, ok := last[p.Destination]; ok && p.At.Sub(l) < time.Second {
			t.Errorf("%s: two messages %v apart", p.Destination, p.At.Sub(l))
		}
		last[p.Destination] = p.At
	}
	tooMany, serverErrors, invalid, early, problems := fake.Stats()
	t.Logf("slack answered 429 %d times, 500 %d times", tooMany, serverErrors)
	if tooMany == 0 {
		t.Error("two replicas never met a 429: the test does not exercise Retry-After")
	}
	if serverErrors != 1 {
		t.Errorf("500 answered %d times, want 1", serverErrors)
	}
	if invalid != 0 || early != 0 {
		t.Errorf("invalid payloads %d, requests before Retry-After ended %d: %v", invalid, early, problems)
	}

	// A restart with a new consumer replays the whole stream: nothing is
	// posted again.
	if err := js.DeleteConsumer(t.Context(), events.DefaultStream, notify.Durable); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureConsumer(t.Context(), js, notify.Config{}.SharedConsumers()[0]); err != nil { // as `freezeframe setup` does
		t.Fatal(err)
	}
	run(t, js, replica(t, js, fake, log))
	waitSettled(t, js, 10)
	check(t)

	for _, secret := range []string{token, webhookSecret, teamsSecret} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("a secret reached the logs: %s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "already posted to slack") {
		t.Error("the replay did not go through the ledger")
	}
}

func waitPosts(t *testing.T, fake *slacktest.Server, n int) {
	t.Helper()
	eventstest.Eventually(t, 30*time.Second, fmt.Sprintf("%d posts accepted", n), func() bool { return len(fake.Accepted()) >= n })
}
