package slack_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/services/notifier/slack"
)

var msg = slack.Message{Text: "hello", Blocks: []slack.Block{slack.Section("*hello*")}}

func TestSecretNeverPrints(t *testing.T) {
	s := slack.Secret("https://hooks.slack.com/services/T/B/secret")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "url", s, "cfg", struct{ URL slack.Secret }{s})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s), buf.String()} {
		if strings.Contains(out, "secret") && !strings.Contains(out, "[redacted]") || strings.Contains(out, "/T/B/") {
			t.Errorf("secret printed: %s", out)
		}
	}
}

func TestPostErrors(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/gone":
			http.Error(w, "no_service", http.StatusNotFound)
		case "/hang":
			<-hang
		case "/api/chat.postMessage":
			fmt.Fprint(w, `{"ok":false,"error":"channel_not_found"}`)
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(hang) }) // runs first: srv.Close waits for handlers
	// A port nothing listens on: a connection that never opens.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/services/T/B/closedsecret"
	l.Close()

	c := slack.NewClient(slack.Options{APIURL: srv.URL + "/api", MinInterval: time.Millisecond, MaxAttempts: 2, Timeout: 300 * time.Millisecond,
		Backoff: func(int) time.Duration { return time.Millisecond }})
	tests := []struct {
		name      string
		d         slack.Destination
		permanent bool
		unconfirm bool
		secret    string
	}{
		{name: "revoked webhook", d: slack.Destination{Name: "w", WebhookURL: slack.Secret(srv.URL + "/gone")}, permanent: true},
		{name: "unknown channel", d: slack.Destination{Name: "#x", Token: "xoxb-tok", Channel: "x"}, permanent: true, secret: "xoxb-tok"},
		{name: "timeout after sending", d: slack.Destination{Name: "w", WebhookURL: slack.Secret(srv.URL + "/hang")}, unconfirm: true},
		{name: "connection refused", d: slack.Destination{Name: "w", WebhookURL: slack.Secret(closed)}, secret: "closedsecret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Post(t.Context(), tt.d, msg, slack.Hooks{})
			if err == nil {
				t.Fatal("no error")
			}
			var perm *slack.PermanentError
			if errors.As(err, &perm) != tt.permanent || errors.Is(err, slack.ErrUnconfirmed) != tt.unconfirm {
				t.Errorf("err %v: permanent %v unconfirmed %v, want %v %v", err, errors.As(err, &perm), errors.Is(err, slack.ErrUnconfirmed), tt.permanent, tt.unconfirm)
			}
			if strings.Contains(err.Error(), "/services/") || strings.Contains(err.Error(), "/hang") || strings.Contains(err.Error(), "/gone") ||
				tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("error carries the URL or token: %v", err)
			}
		})
	}
}
