package notify_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/notifier/slack/slacktest"
)

// Text taken from events (a hook's stderr in a reason, who requested, the
// blueprint, the watchdog's reason and holder) cannot mention a channel or
// add a link: against the contract server, every post carries it escaped,
// and no control sequence at all.
func TestSlackEscapesTextFromEvents(t *testing.T) {
	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	fake := slacktest.NewServer(t, token)
	now := time.Now().UTC()
	failed, forced := in("shop", "bk-x1"), in("shop", "bk-x2")
	publish(t, eventstest.NewPipeline(js),
		&events.BackupRequested{BackupRef: failed, RequestedBy: "<@U0ADMIN>", Blueprint: "<!here>"},
		&events.Quiesced{BackupRef: failed, QuiescedAt: now, Blueprint: "pg-hooks & <!here>"},
		&events.BackupFailed{BackupRef: failed, Step: events.StepSnapshot, Reason: "exec failed: <!channel> see <https://evil.example|the logs> & retry", ResumePending: true},
		&events.Resumed{BackupRef: failed, ResumedAt: now, Reason: events.ResumeAfterFailure, FrozenFor: events.Duration(time.Second)},
		&events.Quiesced{BackupRef: forced, QuiescedAt: now, Blueprint: "pg-hooks"},
		&events.UnlockRequested{BackupRef: forced, Reason: "<!everyone> lease expired", Holder: "<#C0FFEE>", HolderGone: true, RequestedBy: "watchdog"},
		&events.Resumed{BackupRef: forced, ResumedAt: now, Reason: events.ResumeStaleLock, FrozenFor: events.Duration(time.Minute)},
	)
	run(t, js, replica(t, js, fake, slog.New(slog.DiscardHandler)))
	waitPosts(t, fake, 2)

	var all strings.Builder
	for _, p := range fake.Accepted() {
		if seq := slacktest.ControlSequences(p.Message); len(seq) > 0 {
			t.Errorf("post to %s carries control sequences %q:\n%+v", p.Destination, seq, p.Message)
		}
		all.WriteString(p.Message.Text)
		for _, b := range p.Message.Blocks {
			for _, f := range append(b.Fields, b.Elements...) {
				all.WriteString("\n" + f.Text)
			}
			if b.Text != nil {
				all.WriteString("\n" + b.Text.Text)
			}
		}
	}
	for _, want := range []string{
		"exec failed: &lt;!channel&gt; see &lt;https://evil.example|the logs&gt; &amp; retry",
		"requested by &lt;@U0ADMIN&gt;",
		"blueprint pg-hooks &amp; &lt;!here&gt;",
		"&lt;!everyone&gt; lease expired",
		"`&lt;#C0FFEE&gt;`",
	} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("posts do not show %q escaped; they read:\n%s", want, all.String())
		}
	}
}
