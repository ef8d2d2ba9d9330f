package slack_test

import (
	"testing"

	"github.com/freezeframe/freezeframe/services/notifier/slack"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"redis":                           "redis",
		"<!channel>":                      "&lt;!channel&gt;",
		"<https://evil.example|the logs>": "&lt;https://evil.example|the logs&gt;",
		"a & b":                           "a &amp; b",
		"&lt; already":                    "&amp;lt; already",
		"*bold* `code` _it_ ✗":            "*bold* `code` _it_ ✗",
	} {
		if got := slack.Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}
