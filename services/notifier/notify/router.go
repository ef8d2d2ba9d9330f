package notify

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/freezeframe/freezeframe/services/notifier/slack"
)

// Rules say which backups a destination hears of.
const (
	RuleAll      = "all"
	RuleFailures = "failures" // failed backups, forced unlocks included
)

// Route sends the backups of the namespaces matching Namespaces (a glob)
// to Destination, when Rule allows.
type Route struct {
	Namespaces  string
	Destination slack.Destination
	Rule        string
}

// Router picks the destination of each backup: the first route whose glob
// matches its namespace, else the default, if any.
type Router struct {
	routes []Route
	def    *Route
}

// NewRouter reads the routes and the default destination from c.
func NewRouter(c SlackConfig) (*Router, error) {
	r := &Router{}
	var errs []error
	defRule, err := parseRule(c.Notify)
	errs = append(errs, err)
	switch {
	case c.Token != "" && c.Channel != "":
		r.def = &Route{Namespaces: "*", Rule: defRule, Destination: slack.Destination{Name: channelName(c.Channel), Token: c.Token, Channel: strings.TrimPrefix(c.Channel, "#")}}
	case c.WebhookURL != "":
		r.def = &Route{Namespaces: "*", Rule: defRule, Destination: slack.Destination{Name: "webhook", WebhookURL: c.WebhookURL}}
	}
	for entry := range strings.SplitSeq(c.Routes, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		rt, err := parseRoute(entry, c)
		if err != nil {
			errs = append(errs, fmt.Errorf("route %q: %w", entry, err))
			continue
		}
		r.routes = append(r.routes, rt)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if r.def == nil && len(r.routes) == 0 {
		return nil, errors.New("no destination: set SLACK_WEBHOOK_URL, SLACK_TOKEN and SLACK_CHANNEL, or SLACK_ROUTES")
	}
	return r, nil
}

func parseRule(s string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", RuleAll:
		return RuleAll, nil
	case RuleFailures, "failure", "failed":
		return RuleFailures, nil
	}
	return "", fmt.Errorf("rule %q: want all or failures", s)
}

func channelName(ch string) string {
	return "#" + strings.TrimPrefix(ch, "#")
}

// parseRoute reads ns=destination[/rule].
func parseRoute(entry string, c SlackConfig) (Route, error) {
	ns, dest, ok := strings.Cut(entry, "=")
	ns, dest = strings.TrimSpace(ns), strings.TrimSpace(dest)
	if !ok || ns == "" || dest == "" {
		return Route{}, errors.New("want namespace=destination[/failures]")
	}
	if _, err := path.Match(ns, ""); err != nil {
		return Route{}, fmt.Errorf("namespace glob: %w", err)
	}
	rule := RuleAll
	if d, r, ok := strings.Cut(dest, "/"); ok {
		var err error
		if rule, err = parseRule(r); err != nil {
			return Route{}, err
		}
		dest = d
	} else if c.Notify != "" {
		rule, _ = parseRule(c.Notify)
	}
	rt := Route{Namespaces: ns, Rule: rule}
	switch {
	case strings.HasPrefix(dest, "#"):
		if c.Token == "" {
			return Route{}, fmt.Errorf("%s needs SLACK_TOKEN", dest)
		}
		rt.Destination = slack.Destination{Name: dest, Token: c.Token, Channel: strings.TrimPrefix(dest, "#")}
	case dest == "webhook":
		if c.WebhookURL == "" {
			return Route{}, errors.New("webhook needs SLACK_WEBHOOK_URL")
		}
		rt.Destination = slack.Destination{Name: "webhook", WebhookURL: c.WebhookURL}
	case strings.HasPrefix(dest, "webhook:"):
		name := strings.TrimPrefix(dest, "webhook:")
		url, ok := c.Webhooks[name]
		if !ok || url == "" {
			return Route{}, fmt.Errorf("%s is not in SLACK_WEBHOOKS", dest)
		}
		rt.Destination = slack.Destination{Name: dest, WebhookURL: url}
	case dest == "none":
		rt.Destination = slack.Destination{Name: "none"}
	default:
		return Route{}, fmt.Errorf("destination %q: want #channel, webhook, webhook:name or none", dest)
	}
	return rt, nil
}

// Route returns where the outcome of a backup in namespace goes; false
// when nowhere.
func (r *Router) Route(namespace string, o Outcome) (slack.Destination, bool) {
	for _, rt := range r.routes {
		if ok, _ := path.Match(rt.Namespaces, namespace); ok {
			return rt.Destination, rt.Destination.Name != "none" && allows(rt.Rule, o)
		}
	}
	if r.def != nil {
		return r.def.Destination, allows(r.def.Rule, o)
	}
	return slack.Destination{}, false
}

func allows(rule string, o Outcome) bool {
	return rule == RuleAll || !o.Succeeded || o.ForcedUnlock
}

// Names lists the destinations, for logs.
func (r *Router) Names() []string {
	var out []string
	for _, rt := range r.routes {
		out = append(out, rt.Namespaces+"="+rt.Destination.Name+"/"+rt.Rule)
	}
	if r.def != nil {
		out = append(out, "default="+r.def.Destination.Name+"/"+r.def.Rule)
	}
	return out
}
