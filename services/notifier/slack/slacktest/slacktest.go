// Package slacktest is a local Slack for tests: incoming webhooks and
// chat.postMessage that validate the payload like Slack does, hold each
// destination to one message per interval with 429 and Retry-After, and can
// fail with a 500.
package slacktest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/services/notifier/slack"
)

// Post is one message Slack accepted.
type Post struct {
	Destination string // the webhook's name, or "#channel"
	At          time.Time
	Message     slack.Message
}

// Server is a fake Slack.
type Server struct {
	*httptest.Server
	// Interval is the least time between two accepted posts to one
	// destination; a post sooner is answered 429 with Retry-After.
	Interval time.Duration
	Token    string

	mu         sync.Mutex
	webhooks   map[string]string // path -> destination name
	accepted   []Post
	last       map[string]time.Time
	retryUntil map[string]time.Time
	fail500    map[int]bool // request numbers (from 1) answered 500
	requests   int
	// Counters of what the server answered.
	TooMany, ServerErrors, Invalid, EarlyRetries int
	Problems                                     []string
}

// NewServer starts a fake Slack that accepts the bot token token, and
// stops it at the end of the test.
func NewServer(t *testing.T, token string) *Server {
	s := &Server{Interval: time.Second, Token: token, webhooks: map[string]string{}, last: map[string]time.Time{}, retryUntil: map[string]time.Time{}, fail500: map[int]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /services/", s.webhook)
	mux.HandleFunc("POST /api/chat.postMessage", s.postMessage)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// Webhook registers an incoming webhook for destination name and returns
// its secret URL.
func (s *Server) Webhook(name, secret string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := "/services/T000/B000/" + secret
	s.webhooks[p] = name
	return s.URL + p
}

// APIURL is the Web API base URL.
func (s *Server) APIURL() string { return s.URL + "/api" }

// Fail500 answers the n-th request (from 1) with a 500.
func (s *Server) Fail500(n int) { s.mu.Lock(); s.fail500[n] = true; s.mu.Unlock() }

// Accepted returns the posts accepted so far, in order.
func (s *Server) Accepted() []Post {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Post(nil), s.accepted...)
}

// Stats returns the counters.
func (s *Server) Stats() (tooMany, serverErrors, invalid, earlyRetries int, problems []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.TooMany, s.ServerErrors, s.Invalid, s.EarlyRetries, append([]string(nil), s.Problems...)
}

func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	name, ok := s.webhooks[r.URL.Path]
	s.mu.Unlock()
	if !ok {
		http.Error(w, "no_service", http.StatusNotFound)
		return
	}
	var m slack.Message
	if err := s.decode(r, &m, nil); err != nil {
		http.Error(w, "invalid_payload", http.StatusBadRequest)
		return
	}
	if status, retry := s.admit(name, m); status != http.StatusOK {
		if retry > 0 {
			w.Header().Set("Retry-After", fmt.Sprint(retry))
		}
		http.Error(w, map[int]string{429: "rate_limited", 500: "rollup_error"}[status], status)
		return
	}
	io.WriteString(w, "ok")
}

func (s *Server) postMessage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer "+s.Token {
		io.WriteString(w, `{"ok":false,"error":"invalid_auth"}`)
		return
	}
	var m slack.Message
	var channel string
	if err := s.decode(r, &m, &channel); err != nil {
		io.WriteString(w, `{"ok":false,"error":"invalid_blocks"}`)
		return
	}
	if channel == "" {
		io.WriteString(w, `{"ok":false,"error":"channel_not_found"}`)
		return
	}
	status, retry := s.admit("#"+channel, m)
	switch status {
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", fmt.Sprint(retry))
		w.WriteHeader(status)
		io.WriteString(w, `{"ok":false,"error":"ratelimited"}`)
	case http.StatusInternalServerError:
		w.WriteHeader(status)
		io.WriteString(w, `{"ok":false,"error":"internal_error"}`)
	default:
		io.WriteString(w, `{"ok":true,"channel":"C0","ts":"1.0"}`)
	}
}

// admit applies the rate limit and the scripted failures.
func (s *Server) admit(dest string, m slack.Message) (status, retryAfter int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	now := time.Now()
	if until := s.retryUntil[dest]; now.Before(until) {
		s.EarlyRetries++
		s.Problems = append(s.Problems, fmt.Sprintf("%s: request %v before Retry-After ended", dest, until.Sub(now)))
	}
	if s.fail500[s.requests] {
		s.ServerErrors++
		return http.StatusInternalServerError, 0
	}
	if last, ok := s.last[dest]; ok && now.Sub(last) < s.Interval {
		s.TooMany++
		secs := int(math.Ceil((s.Interval - now.Sub(last)).Seconds()))
		s.retryUntil[dest] = now.Add(time.Duration(secs) * time.Second)
		return http.StatusTooManyRequests, secs
	}
	s.last[dest] = now
	s.accepted = append(s.accepted, Post{Destination: dest, At: now, Message: m})
	return http.StatusOK, 0
}

// decode reads the body as Slack would and validates the message.
func (s *Server) decode(r *http.Request, m *slack.Message, channel *string) error {
	err := func() error {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			return fmt.Errorf("content type %q", ct)
		}
		var raw map[string]json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
			return fmt.Errorf("body: %w", err)
		}
		for k := range raw {
			switch k {
			case "text", "blocks":
			case "channel":
				if channel != nil {
					if err := json.Unmarshal(raw[k], channel); err != nil {
						return fmt.Errorf("channel: %w", err)
					}
					continue
				}
				return fmt.Errorf("webhook payload has channel")
			default:
				return fmt.Errorf("unexpected field %q", k)
			}
		}
		b, _ := json.Marshal(raw)
		if err := json.Unmarshal(b, m); err != nil {
			return err
		}
		return Validate(*m)
	}()
	if err != nil {
		s.mu.Lock()
		s.Invalid++
		s.Problems = append(s.Problems, "invalid payload: "+err.Error())
		s.mu.Unlock()
	}
	return err
}

// Validate checks a message against Slack's Block Kit limits for the
// blocks the notifier uses, and requires the text fallback.
func Validate(m slack.Message) error {
	if strings.TrimSpace(m.Text) == "" {
		return fmt.Errorf("text: the fallback is required with blocks")
	}
	if len(m.Blocks) == 0 || len(m.Blocks) > 50 {
		return fmt.Errorf("blocks: %d, want 1 to 50", len(m.Blocks))
	}
	text := func(where string, t *slack.Text, maxLen int, plainOnly bool) error {
		if t == nil || t.Text == "" {
			return fmt.Errorf("%s: text required", where)
		}
		if t.Type != "plain_text" && (plainOnly || t.Type != "mrkdwn") {
			return fmt.Errorf("%s: text type %q", where, t.Type)
		}
		if n := len([]rune(t.Text)); n > maxLen {
			return fmt.Errorf("%s: %d characters, max %d", where, n, maxLen)
		}
		return nil
	}
	for i, b := range m.Blocks {
		where := fmt.Sprintf("blocks[%d] (%s)", i, b.Type)
		switch b.Type {
		case "header":
			if err := text(where, b.Text, 150, true); err != nil {
				return err
			}
		case "section":
			if b.Text == nil && len(b.Fields) == 0 {
				return fmt.Errorf("%s: text or fields required", where)
			}
			if b.Text != nil {
				if err := text(where, b.Text, 3000, false); err != nil {
					return err
				}
			}
			if len(b.Fields) > 10 {
				return fmt.Errorf("%s: %d fields, max 10", where, len(b.Fields))
			}
			for j := range b.Fields {
				if err := text(fmt.Sprintf("%s.fields[%d]", where, j), &b.Fields[j], 2000, false); err != nil {
					return err
				}
			}
		case "context":
			if len(b.Elements) == 0 || len(b.Elements) > 10 {
				return fmt.Errorf("%s: %d elements, want 1 to 10", where, len(b.Elements))
			}
			for j := range b.Elements {
				if err := text(fmt.Sprintf("%s.elements[%d]", where, j), &b.Elements[j], 2000, false); err != nil {
					return err
				}
			}
		case "divider":
		default:
			return fmt.Errorf("%s: unknown block type", where)
		}
	}
	return nil
}

// ControlSequences returns what Slack would read as a link, a mention or an
// entity in m's text fallback and mrkdwn texts: every <...> span, and every
// & that is not one of the three escapes. freezeframe's messages carry
// none; one in a post means text from an event went in unescaped.
func ControlSequences(m slack.Message) []string {
	var out []string
	scan := func(s string) {
		for i := 0; i < len(s); i++ {
			switch s[i] {
			case '<', '>':
				end := strings.IndexByte(s[i:], '>')
				if s[i] == '>' || end < 0 {
					out = append(out, s[i:i+1])
					continue
				}
				out = append(out, s[i:i+end+1])
				i += end
			case '&':
				if !strings.HasPrefix(s[i:], "&amp;") && !strings.HasPrefix(s[i:], "&lt;") && !strings.HasPrefix(s[i:], "&gt;") {
					out = append(out, "&")
				}
			}
		}
	}
	scan(m.Text)
	for _, b := range m.Blocks {
		texts := append(append([]slack.Text(nil), b.Fields...), b.Elements...)
		if b.Text != nil {
			texts = append(texts, *b.Text)
		}
		for _, t := range texts {
			if t.Type == "mrkdwn" {
				scan(t.Text)
			}
		}
	}
	return out
}
