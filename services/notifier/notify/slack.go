package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/services/notifier/slack"
)

// Poster posts one message to one destination; *slack.Client is one.
type Poster interface {
	Post(ctx context.Context, d slack.Destination, m slack.Message, h slack.Hooks) error
}

// SlackNotifier posts each terminal event to the destination its namespace
// routes to, once.
//
// Exactly once is kept by the ledger: before each HTTP call the entry for
// (destination, event id) moves to "sending", after Slack's confirmation to
// "sent", and after an answer that says the message was not posted (429,
// 5xx, no connection) to "not-sent". A redelivered event finds "sent" and is
// acked; "not-sent" is retried; "sending" means a replica died or lost its
// answer between the call and the record: the message may be in the channel
// and is not posted again. That window is one HTTP call: it trades a
// possible lost message for never a duplicate, and is logged as an error.
//
// Each HTTP call is made in a turn on its destination shared by the
// replicas through the ledger's bucket: one call at a time, and none before
// a Retry-After any replica received has ended (see turns.go).
type SlackNotifier struct {
	router  *Router
	poster  Poster
	ledger  *Ledger
	turns   *turns
	history History
	log     *slog.Logger
}

// NewSlackNotifier returns a notifier over its parts.
func NewSlackNotifier(r *Router, p Poster, l *Ledger, h History, log *slog.Logger) *SlackNotifier {
	return &SlackNotifier{router: r, poster: p, ledger: l, turns: &turns{l: l, log: log}, history: h, log: log}
}

// Notify implements Notifier.
func (n *SlackNotifier) Notify(ctx context.Context, ev events.Event) error {
	o, ok := OutcomeOf(ev)
	if !ok {
		return nil
	}
	dest, ok := n.router.Route(o.Workload.Namespace, o)
	if !ok {
		return nil
	}
	log := n.log.With("backup_id", o.BackupID, "destination", dest.Name, "event_id", ev.CloudEvent.ID())
	e, err := n.ledger.open(ctx, dest.Name, ev.CloudEvent.ID())
	if err != nil {
		return err
	}
	switch e.rec.State {
	case stateSent:
		log.DebugContext(ctx, "already posted to slack")
		return nil
	case stateSending:
		log.ErrorContext(ctx, "slack post of this event unconfirmed (a replica stopped between the call and its record); not posting again so as never to post twice")
		return nil
	}
	r, err := BuildReport(ctx, n.history, ev, o)
	if err != nil {
		return fmt.Errorf("build slack message: %w", err)
	}
	err = n.poster.Post(ctx, dest, r.Message(), slack.Hooks{
		BeforeSend: func(ctx context.Context) error { return e.set(ctx, stateSending) },
		NotSent:    func(ctx context.Context) error { return e.set(ctx, stateNotSent) },
		Turn: func(ctx context.Context, timeout time.Duration) (func(time.Duration), error) {
			return n.turns.take(ctx, dest.Name, timeout)
		},
	})
	var perm *slack.PermanentError
	switch {
	case err == nil:
		if err := e.set(ctx, stateSent); err != nil {
			// Posted; the entry stays "sending", which also stops a repost.
			log.WarnContext(ctx, "posted to slack but could not record it", "err", err)
		}
		log.InfoContext(ctx, "posted to slack")
		return nil
	case errors.Is(err, slack.ErrUnconfirmed):
		log.ErrorContext(ctx, "slack post unconfirmed; not retried so as never to post twice", "err", err)
		return nil
	case errors.As(err, &perm):
		return events.Permanent(err)
	}
	return err
}
