package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestCLIBackupWaitAndEvents(t *testing.T) {
	p := startPipeline(t, "")
	conn := []string{"--nats", p.natsURL, "--cluster", "dev"}

	code, out, errOut := cli(t, append([]string{"backup", "deploy/redis", "-n", "shop", "--wait"}, conn...)...)
	if code != 0 {
		t.Fatalf("backup --wait exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"requested for deployment/redis -n shop", "quiesced", "snapshotted", "1 snapshot(s) cut", "redis-data→ff-", "writes resumed after", "snapshot-ready", "ready to restore", "succeeded in"} {
		if !strings.Contains(out, want) {
			t.Errorf("backup --wait output lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = cli(t, append([]string{"events", "-n", "shop"}, conn...)...)
	if code != 0 {
		t.Fatalf("events exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(out, "resumed") || !strings.Contains(out, "snapshot-ready") {
		t.Fatalf("events table: want a header and 5 events, got:\n%s", out)
	}

	code, out, _ = cli(t, append([]string{"events", "-o", "json", "--kind", "resumed"}, conn...)...)
	if code != 0 {
		t.Fatalf("events -o json exit %d", code)
	}
	var ce map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &ce); err != nil {
		t.Fatalf("events -o json is not one JSON event per line: %v\n%s", err, out)
	}
	if ce["type"] != "io.freezeframe.backup.resumed.v1" || ce["specversion"] != "1.0" {
		t.Errorf("json event %v", ce)
	}
}

func TestCLIBackupFailureExitsNonZero(t *testing.T) {
	p := startPipeline(t, "")
	p.exec.Fail("CLIENT PAUSE", 0)
	code, out, _ := cli(t, "backup", "deployment/redis", "-n", "shop", "--wait", "--nats", p.natsURL, "--cluster", "dev")
	if code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "quiesce failed") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	code, _, errOut := cli(t, "backup", "deployment/ghost", "-n", "shop", "--nats", p.natsURL, "--cluster", "dev")
	if code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("missing workload: exit %d, stderr %q", code, errOut)
	}
}

func TestCLIUsageErrors(t *testing.T) {
	tests := [][]string{{}, {"explode"}, {"backup"}, {"backup", "cronjob/x"}, {"events", "-o", "yaml"}}
	for _, args := range tests {
		if code, _, _ := cli(t, args...); code == 0 {
			t.Errorf("freezeframe %v exited 0", args)
		}
	}
	// Refused before connecting anywhere, with what was wrong.
	for message, args := range map[string][]string{
		`-o "yaml": want table or json`: {"status", "-o", "yaml"},
		`unexpected argument "redis"`:   {"events", "redis"},
		`unexpected argument "now"`:     {"up", "now"},
	} {
		code, _, errOut := cli(t, args...)
		if code == 0 || !strings.Contains(errOut, message) {
			t.Errorf("freezeframe %v: exit %d, stderr %q, want it to say %s", args, code, errOut, message)
		}
	}
	if code, out, _ := cli(t, "help"); code != 0 || !strings.Contains(out, "freezeframe up") {
		t.Errorf("help: exit %d, %q", code, out)
	}
}
