package slack

import "strings"

// escaper replaces the three characters Slack reads as control sequences in
// message text: with them, a name or reason taken from an event could
// write <!channel>, <@U123> or a link of its own choosing.
var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// Escape makes s safe to put into mrkdwn or a message's text fallback, per
// Slack's rules: &, < and > become &amp;, &lt; and &gt; (and nothing else
// is encoded, as Slack decodes only those). Everything taken from an event
// goes through it; the notifier's own markup (*bold*, `code`) does not.
func Escape(s string) string {
	if !strings.ContainsAny(s, "&<>") {
		return s
	}
	return escaper.Replace(s)
}

// Text is a Block Kit text object.
type Text struct {
	Type string `json:"type"` // "mrkdwn" or "plain_text"
	Text string `json:"text"`
}

// Markdown returns a mrkdwn text object.
func Markdown(s string) Text { return Text{Type: "mrkdwn", Text: s} }

// Plain returns a plain_text text object.
func Plain(s string) Text { return Text{Type: "plain_text", Text: s} }

// Block is the subset of Block Kit the notifier uses: header, section (text
// and fields), context and divider.
type Block struct {
	Type     string `json:"type"`
	Text     *Text  `json:"text,omitempty"`
	Fields   []Text `json:"fields,omitempty"`
	Elements []Text `json:"elements,omitempty"`
}

// Header returns a header block (plain text, at most 150 characters).
func Header(s string) Block { t := Plain(truncate(s, 150)); return Block{Type: "header", Text: &t} }

// Section returns a section block with mrkdwn text.
func Section(s string) Block {
	t := Markdown(truncate(s, 3000))
	return Block{Type: "section", Text: &t}
}

// Fields returns a section block of up to ten mrkdwn fields.
func Fields(fields ...string) Block {
	b := Block{Type: "section"}
	for _, f := range fields[:min(len(fields), 10)] {
		b.Fields = append(b.Fields, Markdown(truncate(f, 2000)))
	}
	return b
}

// Context returns a context block of mrkdwn elements.
func Context(elements ...string) Block {
	b := Block{Type: "context"}
	for _, e := range elements[:min(len(elements), 10)] {
		b.Elements = append(b.Elements, Markdown(truncate(e, 2000)))
	}
	return b
}

// Divider returns a divider block.
func Divider() Block { return Block{Type: "divider"} }

// Message is what is posted: Text is the notification and screen-reader
// fallback, Blocks the layout shown in the channel.
type Message struct {
	Text   string  `json:"text"`
	Blocks []Block `json:"blocks,omitempty"`
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
