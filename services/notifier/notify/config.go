package notify

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/services/notifier/slack"
)

// Config is the notifier's configuration, read from NOTIFIER_* variables.
type Config struct {
	service.Common
	// Concurrency bounds the notifications in flight: a slow destination
	// must not hold every backup's notification in memory.
	Concurrency int `envconfig:"CONCURRENCY" default:"16" desc:"terminal events notified at once"`
	// Embedded, so that keys read NOTIFIER_SLACK_* and fall back to
	// SLACK_*, not to a bare TOKEN.
	SlackConfig
}

// SlackConfig says where Slack messages go. The secrets come from the
// environment only (in Kubernetes, from a Secret through secretKeyRef).
type SlackConfig struct {
	WebhookURL  slack.Secret            `envconfig:"SLACK_WEBHOOK_URL" desc:"incoming webhook URL of the default destination (secret)"`
	Token       slack.Secret            `envconfig:"SLACK_TOKEN" desc:"bot token (chat:write) for the Web API (secret)"`
	Channel     string                  `envconfig:"SLACK_CHANNEL" desc:"channel of the default destination through the Web API; with SLACK_TOKEN it wins over SLACK_WEBHOOK_URL"`
	Webhooks    map[string]slack.Secret `envconfig:"SLACK_WEBHOOKS" desc:"named incoming webhooks for routes, name:url,name:url (secret)"`
	Notify      string                  `envconfig:"SLACK_NOTIFY" default:"all" desc:"which backups the default destination hears of: all, or failures (failed backups and forced unlocks)"`
	Routes      string                  `envconfig:"SLACK_ROUTES" desc:"namespace routing, first match wins: ns=destination[/failures],...; ns may be a glob (team-*); destination is #channel (Web API), webhook, or webhook:name"`
	APIURL      string                  `envconfig:"SLACK_API_URL" default:"https://slack.com/api" desc:"Slack Web API base URL"`
	MinInterval time.Duration           `envconfig:"SLACK_MIN_INTERVAL" default:"1s" desc:"least time between two messages to one destination (Slack allows one per second)"`
	MaxAttempts int                     `envconfig:"SLACK_MAX_ATTEMPTS" default:"5" desc:"posts of one message answered 429 or 5xx before it goes back to the stream for redelivery"`
	Timeout     time.Duration           `envconfig:"SLACK_TIMEOUT" default:"10s" desc:"timeout of one call to Slack"`
	Bucket      string                  `envconfig:"SLACK_BUCKET" default:"freezeframe-notified" desc:"JetStream key-value bucket recording which events were posted where"`
}

// Enabled reports whether any Slack destination is configured.
func (c SlackConfig) Enabled() bool {
	return c.WebhookURL != "" || c.Token != "" || len(c.Webhooks) > 0
}

func (c Config) withDefaults() Config {
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.SlackConfig.Bucket == "" {
		c.SlackConfig.Bucket = "freezeframe-notified"
	}
	return c
}

// Run connects to the event stream and notifies through the log, and
// through Slack when configured, until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg = cfg.withDefaults()
	var n Notifier = NewLogNotifier(log)
	var router *Router
	if cfg.SlackConfig.Enabled() {
		var err error
		if router, err = NewRouter(cfg.SlackConfig); err != nil {
			return fmt.Errorf("slack configuration: %w", err)
		}
	}
	bus, err := service.OpenBus(ctx, cfg.Common, "notifier", log)
	if err != nil {
		return err
	}
	defer bus.Close()
	if router != nil {
		var ledger *Ledger
		if err := service.AwaitSetUp(ctx, log, "open the notification ledger", func(ctx context.Context) (err error) {
			ledger, err = OpenLedger(ctx, bus.JetStream, cfg.SlackConfig.Bucket)
			return err
		}); err != nil {
			return err
		}
		client := slack.NewClient(slack.Options{
			APIURL: cfg.SlackConfig.APIURL, MinInterval: cfg.SlackConfig.MinInterval,
			MaxAttempts: cfg.SlackConfig.MaxAttempts, Timeout: cfg.SlackConfig.Timeout,
		})
		s := NewSlackNotifier(router, client, ledger, events.NewStreamHistory(bus.JetStream, cfg.NATS.Stream), log)
		n = Notifiers{n, s}
		log.InfoContext(ctx, "notifying Slack", "destinations", router.Names())
	}
	return New(cfg, n, log).Run(ctx, bus.JetStream)
}
