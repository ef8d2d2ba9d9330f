package service

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type testConfig struct {
	Common
	Answer int `envconfig:"ANSWER" default:"42" desc:"the answer"`
}

func TestLoadPrefixFallbackAndHelp(t *testing.T) {
	t.Setenv("NATS_URL", "nats://shared:4222")
	t.Setenv("TESTSVC_CLUSTER", "prod")
	var cfg testConfig
	if _, err := Load("TESTSVC", &cfg, nil, nil); err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.URL != "nats://shared:4222" || cfg.Cluster != "prod" || cfg.Answer != 42 || cfg.ShutdownTimeout != 25*time.Second {
		t.Fatalf("config %+v", cfg)
	}
	var out bytes.Buffer
	help, err := Load("TESTSVC", &cfg, []string{"--help"}, &out)
	if !help || err != nil {
		t.Fatalf("help=%v err=%v", help, err)
	}
	for _, want := range []string{"TESTSVC_NATS_URL", "TESTSVC_ANSWER", "the answer", "nats://127.0.0.1:4222"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := Load("TESTSVC", &cfg, []string{"--port=1"}, nil); err == nil {
		t.Error("stray arguments accepted")
	}
}

func TestMainExitCodes(t *testing.T) {
	var cfg testConfig
	var stdout, stderr bytes.Buffer
	if code := mainExit("t", "TESTSVC", &cfg, nil, []string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "TESTSVC_ANSWER") {
		t.Fatalf("help: code %d, out %q", code, stdout.String())
	}
	t.Setenv("TESTSVC_ANSWER", "not a number")
	if code := mainExit("t", "TESTSVC", &cfg, nil, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "ANSWER") {
		t.Fatalf("bad config: code %d, stderr %q", code, stderr.String())
	}
}

func TestRunLogsTraceIDs(t *testing.T) {
	var logs bytes.Buffer
	log := NewLogger(&logs, slog.LevelInfo)
	err := Run(t.Context(), "t", time.Second, log, func(ctx context.Context, log *slog.Logger) error {
		ctx, span := tracerForTest().Start(ctx, "work")
		defer span.End()
		log.InfoContext(ctx, "inside a span")
		return context.Canceled // a cancelled service stops cleanly
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"trace_id":"`) {
		t.Fatalf("log lines carry no trace id:\n%s", logs.String())
	}
}
