package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultAPIURL is the Web API's base URL.
const DefaultAPIURL = "https://slack.com/api"

// ErrUnconfirmed says a post may or may not have reached the channel.
var ErrUnconfirmed = errors.New("post unconfirmed")

// PermanentError is an answer no retry can change: a revoked webhook, an
// unknown channel, an invalid payload.
type PermanentError struct {
	Status int
	Reason string
}

func (e *PermanentError) Error() string {
	return fmt.Sprintf("slack refused the message: %d %s", e.Status, e.Reason)
}

// Destination is one place messages go: an incoming webhook, or a channel
// through the Web API.
type Destination struct {
	// Name identifies the destination in logs and deduplication keys; it
	// must not contain the secret.
	Name       string
	WebhookURL Secret
	Token      Secret
	Channel    string
}

// Options tune a Client.
type Options struct {
	// APIURL is the Web API's base URL; DefaultAPIURL when empty.
	APIURL string
	// MinInterval is the least time between two posts to one destination.
	// Default 1s, Slack's limit.
	MinInterval time.Duration
	// MaxAttempts bounds the posts of one message answered by 429 or 5xx, or
	// that could not connect. Default 5.
	MaxAttempts int
	// Backoff is the wait after the n-th failed attempt (not after a 429,
	// which says how long to wait). Default 1s doubling to 30s.
	Backoff func(attempt int) time.Duration
	// Timeout bounds one HTTP call. Default 10s.
	Timeout time.Duration
	// HTTPClient defaults to a client with Timeout.
	HTTPClient *http.Client
}

// Hooks let a caller record, around each HTTP call, whether the message
// might be in the channel: BeforeSend just before a call, NotSent after an
// answer that says it is not. An error from either stops Post.
//
// Turn, when set, shares the destination with other processes that post to
// it: Post takes a turn after pacing and before BeforeSend, makes one call
// in it, and ends it with the call's Retry-After (zero unless Slack answered
// 429). An implementation lets one turn at a time run per destination and
// starts none before a Retry-After that any turn ended with has passed, so
// that no process posts into a wait Slack asked another one for. A turn
// lasts at most timeout (the HTTP call's) plus the hooks' own time. An error
// from Turn stops Post; the message was not posted.
type Hooks struct {
	BeforeSend func(ctx context.Context) error
	NotSent    func(ctx context.Context) error
	Turn       func(ctx context.Context, timeout time.Duration) (end func(retryAfter time.Duration), err error)
}

// Client posts messages, pacing each destination.
type Client struct {
	opts   Options
	http   *http.Client
	mu     sync.Mutex
	pacers map[string]*pacer
}

// NewClient returns a client with opts.
func NewClient(opts Options) *Client {
	if opts.APIURL == "" {
		opts.APIURL = DefaultAPIURL
	}
	opts.APIURL = strings.TrimSuffix(opts.APIURL, "/")
	if opts.MinInterval <= 0 {
		opts.MinInterval = time.Second
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Backoff == nil {
		opts.Backoff = func(n int) time.Duration { return min(time.Second<<(n-1), 30*time.Second) }
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: opts.Timeout}
	}
	return &Client{opts: opts, http: hc, pacers: map[string]*pacer{}}
}

// outcome of one HTTP call.
type outcome int

const (
	posted outcome = iota
	rateLimited
	retryable   // not posted, may succeed later
	unconfirmed // may have been posted
	refused     // not posted, never will be
	stopped     // a hook or ctx stopped the attempt before the call
)

// Post sends m to d, pacing, honouring Retry-After and retrying 5xx. The
// error wraps ErrUnconfirmed, is a *PermanentError, or is a failure after
// MaxAttempts (the message was not posted; retrying later is safe).
func (c *Client) Post(ctx context.Context, d Destination, m Message, h Hooks) error {
	body, err := c.body(d, m)
	if err != nil {
		return err
	}
	p := c.pacer(d.Name)
	var last error
	for attempt := 1; attempt <= c.opts.MaxAttempts; attempt++ {
		if err := p.wait(ctx, c.opts.MinInterval); err != nil {
			return fmt.Errorf("post to %s: %w", d.Name, err)
		}
		out, err := c.attempt(ctx, d, body, p, h)
		switch out {
		case stopped:
			return err
		case posted:
			return nil
		case unconfirmed:
			return fmt.Errorf("post to %s: %w: %w", d.Name, ErrUnconfirmed, err)
		case refused:
			if h.NotSent != nil {
				if herr := h.NotSent(ctx); herr != nil {
					return errors.Join(err, herr)
				}
			}
			return fmt.Errorf("post to %s: %w", d.Name, err)
		}
		if h.NotSent != nil {
			if err := h.NotSent(ctx); err != nil {
				return err
			}
		}
		last = err
		if out == rateLimited {
			continue // the pacer and the turn wait
		}
		wait := c.opts.Backoff(attempt)
		if attempt < c.opts.MaxAttempts {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("post to %s: %w", d.Name, ctx.Err())
			case <-t.C:
			}
		}
	}
	return fmt.Errorf("post to %s: gave up after %d attempts: %w", d.Name, c.opts.MaxAttempts, last)
}

// attempt makes one call to d in a turn on it: this client's own (one call
// per destination at a time, none before a Retry-After it received ended)
// and the caller's h.Turn, shared with other processes. A 429 holds both
// until its Retry-After has passed.
func (c *Client) attempt(ctx context.Context, d Destination, body []byte, p *pacer, h Hooks) (outcome, error) {
	if err := p.enter(ctx); err != nil {
		return stopped, fmt.Errorf("post to %s: %w", d.Name, err)
	}
	defer p.leave()
	var retryAfter time.Duration
	if h.Turn != nil {
		end, err := h.Turn(ctx, c.opts.Timeout)
		if err != nil {
			return stopped, fmt.Errorf("post to %s: %w", d.Name, err)
		}
		defer func() { end(retryAfter) }()
	}
	if h.BeforeSend != nil {
		if err := h.BeforeSend(ctx); err != nil {
			return stopped, err
		}
	}
	out, ra, err := c.call(ctx, d, body)
	if out == rateLimited {
		retryAfter = ra
		p.hold(ra)
	}
	return out, err
}

func (c *Client) body(d Destination, m Message) ([]byte, error) {
	if d.WebhookURL == "" && (d.Token == "" || d.Channel == "") {
		return nil, &PermanentError{Reason: "destination " + d.Name + " has neither a webhook URL nor a token and channel"}
	}
	if d.WebhookURL != "" {
		return json.Marshal(m)
	}
	return json.Marshal(struct {
		Channel string `json:"channel"`
		Message
	}{d.Channel, m})
}

func (c *Client) call(ctx context.Context, d Destination, body []byte) (outcome, time.Duration, error) {
	target := d.WebhookURL.Reveal()
	if target == "" {
		target = c.opts.APIURL + "/chat.postMessage"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		// The error would quote the URL.
		return refused, 0, &PermanentError{Reason: "invalid webhook URL"}
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if d.WebhookURL == "" {
		req.Header.Set("Authorization", "Bearer "+d.Token.Reveal())
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return classifyTransport(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	reason := strings.TrimSpace(string(raw))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return rateLimited, retryAfter(resp.Header.Get("Retry-After")), fmt.Errorf("rate limited: %s", reason)
	case resp.StatusCode >= 500:
		return retryable, 0, fmt.Errorf("slack answered %d %s", resp.StatusCode, reason)
	case resp.StatusCode >= 400:
		return refused, 0, &PermanentError{Status: resp.StatusCode, Reason: reason}
	}
	if d.WebhookURL != "" {
		return posted, 0, nil
	}
	var api struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(raw, &api); err != nil {
		return unconfirmed, 0, fmt.Errorf("undecodable Web API answer %d", resp.StatusCode)
	}
	switch {
	case api.OK:
		return posted, 0, nil
	case api.Error == "ratelimited":
		return rateLimited, retryAfter(resp.Header.Get("Retry-After")), errors.New("rate limited")
	case api.Error == "internal_error" || api.Error == "fatal_error" || api.Error == "service_unavailable" || api.Error == "request_timeout":
		return retryable, 0, errors.New("slack answered " + api.Error)
	}
	return refused, 0, &PermanentError{Status: resp.StatusCode, Reason: api.Error}
}

// classifyTransport tells a call that never reached Slack (retry is safe)
// from one that may have, and strips the URL from the error.
func classifyTransport(err error) (outcome, time.Duration, error) {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return retryable, 0, fmt.Errorf("connect: %w", err)
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return retryable, 0, fmt.Errorf("resolve: %w", err)
	}
	return unconfirmed, 0, err
}

func retryAfter(h string) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(time.Until(t), 0)
	}
	return time.Second
}

func (c *Client) pacer(name string) *pacer {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pacers[name]
	if !ok {
		p = &pacer{turn: make(chan struct{}, 1)}
		c.pacers[name] = p
	}
	return p
}

// pacer hands out send slots for one destination, MinInterval apart and
// never before a Retry-After ends, and lets one call at a time run: a call
// that the pacer let through must not reach Slack after another one's 429
// told the destination to wait.
type pacer struct {
	mu   sync.Mutex
	next time.Time // the next free slot
	held time.Time // no slot before this (Retry-After)
	turn chan struct{}
}

// enter waits for the destination's one call in flight to end, then for a
// Retry-After it received to pass.
func (p *pacer) enter(ctx context.Context) error {
	select {
	case p.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mu.Lock()
	d := time.Until(p.held)
	p.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		p.leave()
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (p *pacer) leave() { <-p.turn }

func (p *pacer) wait(ctx context.Context, interval time.Duration) error {
	for {
		p.mu.Lock()
		slot := time.Now()
		if p.next.After(slot) {
			slot = p.next
		}
		if p.held.After(slot) {
			slot = p.held
		}
		p.next = slot.Add(interval)
		p.mu.Unlock()
		if d := time.Until(slot); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		p.mu.Lock()
		// A 429 seen while waiting moves every reserved slot past it.
		again := p.held.After(slot)
		p.mu.Unlock()
		if !again {
			return nil
		}
	}
}

// hold keeps every sender back until d from now.
func (p *pacer) hold(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if until := time.Now().Add(d); until.After(p.held) {
		p.held = until
	}
}
