// Package slack posts messages to Slack, through an incoming webhook or the
// Web API (chat.postMessage with a bot token), the way Slack wants to be
// called.
//
// # Pacing and retries
//
// A [Client] sends at most one message per [Options.MinInterval] to each
// destination, across every goroutine that shares it, and has one call to a
// destination in flight at a time. A 429 answer holds the whole destination
// back for its Retry-After; a 5xx or a connection that could not be opened
// is retried with backoff, up to [Options.MaxAttempts]. Any other 4xx, and a
// Web API answer with ok=false, is a [*PermanentError].
//
// Pacing is per Client. Processes that post to one destination share its
// Retry-After through [Hooks] Turn: Slack's wait is the destination's, and
// a process that did not receive the 429 must honour it too.
//
// # Unconfirmed posts
//
// A transport error after the request may have reached Slack (a timeout, a
// reset connection) leaves the question "was it posted?" without an answer.
// Post does not retry then and returns an error matching [ErrUnconfirmed]: a
// caller that must never post twice treats it as done.
//
// # Secrets
//
// Webhook URLs and bot tokens are [Secret] values, which print, log and
// marshal as "[redacted]". Errors never carry a URL: net/http's *url.Error
// does, so it is unwrapped before it leaves the package.
//
// The package writes the HTTP calls itself rather than using slack-go: its
// webhook call neither paces nor retries, and both destinations share one
// pacing and retry policy here.
package slack
