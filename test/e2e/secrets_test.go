package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/services/notifier/slack/slacktest"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// Every test's `freezeframe up` runs with secrets in play: the services' NATS seeds, a
// Slack bot token (its notifier posts to a local Slack that enforces the Web API's
// contract), and the database passwords the test's blueprints read from Secrets. When
// the test ends, the services' log, the nats-server's log and every event in the stream
// are searched for each of them, as they are and base64-encoded: none may be there.

// slackEnv starts the test's Slack and returns the notifier's settings for it and its
// token.
func slackEnv(t *testing.T) (env []string, token string) {
	token = "xoxb-e2e-" + randomHex(12)
	s := slacktest.NewServer(t, token)
	return []string{"NOTIFIER_SLACK_TOKEN=" + token, "NOTIFIER_SLACK_CHANNEL=#backups", "NOTIFIER_SLACK_API_URL=" + s.APIURL()}, token
}

// passwordKey is a Secret key whose value is a credential.
var passwordKey = regexp.MustCompile(`(?i)pass|token|secret|auth|key|seed`)

// secretsInPlay are the values no log or event may hold: the bus's seeds, the Slack
// token and the credentials in the cluster's Secrets (outside kube-system), at least 8
// bytes long so that a short value cannot match by chance.
func secretsInPlay(ctx context.Context, c *sandbox.Cluster, bus *harness.Bus, slackToken ...string) (map[string]string, error) {
	found := map[string]string{}
	for _, r := range events.Roles() {
		seed, err := os.ReadFile(bus.Seed(r))
		if err != nil {
			return nil, fmt.Errorf("read %s seed: %w", r, err)
		}
		found[strings.TrimSpace(string(seed))] = "NATS seed of " + string(r)
	}
	for _, v := range slackToken {
		if v != "" {
			found[v] = "Slack token"
		}
	}
	secrets, err := c.Client.CoreV1().Secrets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	for _, s := range secrets.Items {
		if s.Namespace == metav1.NamespaceSystem || s.Type == corev1.SecretTypeServiceAccountToken {
			continue
		}
		for k, v := range s.Data {
			if passwordKey.MatchString(k) && len(v) >= 8 {
				found[string(v)] = fmt.Sprintf("Secret %s/%s key %s", s.Namespace, s.Name, k)
			}
		}
	}
	return found, nil
}

// streamMessages returns every message of the event stream, headers and data, read as
// admin.
func streamMessages(ctx context.Context, bus *harness.Bus) ([][]byte, error) {
	nc, err := bus.Connect(events.RoleAdmin)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, events.DefaultStream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", events.DefaultStream, err)
	}
	st := stream.CachedInfo().State
	var out [][]byte
	for seq := st.FirstSeq; seq <= st.LastSeq && st.Msgs > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", seq, err)
		}
		var b bytes.Buffer
		b.WriteString(m.Subject)
		for k, vs := range m.Header {
			b.WriteString("\n" + k + ": " + strings.Join(vs, ","))
		}
		b.WriteString("\n")
		b.Write(m.Data)
		out = append(out, b.Bytes())
	}
	return out, nil
}

// checkNoSecretLeaked fails t for each secret in play found in up's log, the bus's log
// or the stream.
func checkNoSecretLeaked(t testing.TB, up *harness.Up, bus *harness.Bus, slackToken string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	secrets, err := secretsInPlay(ctx, sandbox.Shared(t), bus, slackToken)
	if err != nil {
		t.Errorf("secret scan: %v", err)
		return
	}
	places := map[string][]byte{}
	for name, path := range map[string]string{"freezeframe up log": up.LogPath(), "nats-server log": bus.Log()} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("secret scan: %v", err)
			return
		}
		places[name] = b
	}
	msgs, err := streamMessages(ctx, bus)
	if err != nil {
		t.Errorf("secret scan: %v", err)
		return
	}
	for i, m := range msgs {
		places[fmt.Sprintf("stream message %d", i+1)] = m
	}
	for value, what := range secrets {
		forms := []string{value, base64.StdEncoding.EncodeToString([]byte(value))}
		for place, b := range places {
			for _, f := range forms {
				if bytes.Contains(b, []byte(f)) {
					t.Errorf("%s found in the %s", what, place)
				}
			}
		}
	}
	if len(secrets) == 0 {
		t.Errorf("secret scan: no secret in play to search for")
	}
	t.Logf("secret scan: searched for %d secrets in the 2 logs and the %d stream messages", len(secrets), len(msgs))
}
