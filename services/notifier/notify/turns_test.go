package notify

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/notifier/slack"
	"github.com/freezeframe/freezeframe/services/notifier/slack/slacktest"
)

// A Retry-After one replica received holds every replica: B's 429 keeps A,
// which paces on its own and never saw that answer, from posting to the
// destination until it has ended.
func TestTurnsShareRetryAfter(t *testing.T) {
	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	fake := slacktest.NewServer(t, "xoxb-turns")
	dest := slack.Destination{Name: "webhook", WebhookURL: slack.Secret(fake.Webhook("webhook", "turnsecret"))}
	msg := slack.Message{Text: "hello", Blocks: []slack.Block{slack.Section("*hello*")}}
	replica := func(interval time.Duration) func(ctx context.Context) error {
		if _, err := js.CreateOrUpdateKeyValue(t.Context(), events.LedgerBucketConfig("turns-test", 1, time.Hour)); err != nil {
			t.Fatal(err)
		}
		l, err := OpenLedger(t.Context(), js, "turns-test")
		if err != nil {
			t.Fatal(err)
		}
		tr := &turns{l: l, log: slog.New(slog.DiscardHandler)}
		c := slack.NewClient(slack.Options{MinInterval: interval, MaxAttempts: 5, Backoff: func(int) time.Duration { return 10 * time.Millisecond }})
		return func(ctx context.Context) error {
			return c.Post(ctx, dest, msg, slack.Hooks{Turn: func(ctx context.Context, timeout time.Duration) (func(time.Duration), error) {
				return tr.take(ctx, dest.Name, timeout)
			}})
		}
	}
	// A's own pacing would let it post again 100ms after its first post.
	a, b := replica(100*time.Millisecond), replica(time.Second)

	if err := a(t.Context()); err != nil {
		t.Fatal(err)
	}
	bDone := make(chan error, 1)
	go func() { bDone <- b(t.Context()) }() // too soon after A's: 429
	eventstest.Eventually(t, 5*time.Second, "B answered 429", func() bool {
		tooMany, _, _, _, _ := fake.Stats()
		return tooMany > 0
	})
	if err := a(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}

	if n := len(fake.Accepted()); n != 3 {
		t.Errorf("%d posts accepted, want 3", n)
	}
	if _, _, _, early, problems := fake.Stats(); early != 0 {
		t.Errorf("%d requests before Retry-After ended: %v", early, problems)
	}
}
