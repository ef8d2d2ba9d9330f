package service

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Common is the configuration every service shares. Each service embeds it
// (anonymously, so that keys are not prefixed twice): HOOKER_NATS_URL
// overrides NATS_URL for the hooker alone.
type Common struct {
	NATS
	// Cluster names this Kubernetes cluster in every event and subject.
	Cluster         string        `envconfig:"CLUSTER" default:"default" desc:"name of this Kubernetes cluster in events and subjects (a DNS label)"`
	LogLevel        slog.Level    `envconfig:"LOG_LEVEL" default:"info" desc:"log level: debug, info, warn, error"`
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"25s" desc:"how long in-flight work may finish after SIGTERM"`
	HTTPAddr        string        `envconfig:"HTTP_ADDR" default:":8080" desc:"address serving /healthz, /readyz and /metrics (Prometheus); empty: none"`

	// Runtime comes from whoever runs the service, never from the
	// environment.
	Runtime Runtime `ignored:"true"`
}

// Load reads cfg from the environment under prefix. With --help or -h in
// args it prints every key instead and returns help=true.
func Load(prefix string, cfg any, args []string, out io.Writer) (help bool, err error) {
	for _, a := range args {
		if a == "--help" || a == "-h" || a == "help" {
			return true, Usage(prefix, cfg, out)
		}
	}
	if len(args) > 0 {
		return false, fmt.Errorf("unexpected arguments %q: configuration comes from the environment; see --help", strings.Join(args, " "))
	}
	if err := envconfig.Process(prefix, cfg); err != nil {
		return false, fmt.Errorf("load configuration: %w", err)
	}
	return false, nil
}

// Usage prints every configuration key with its type, default and meaning.
func Usage(prefix string, cfg any, out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(out, "Configuration, from the environment. A %s_X key falls back to plain X when only that is set.\n", prefix)
	const format = `KEY	TYPE	DEFAULT	REQUIRED	DESCRIPTION
{{range .}}{{usage_key .}}	{{usage_type .}}	{{usage_default .}}	{{usage_required .}}	{{usage_description .}}
{{end}}`
	if err := envconfig.Usagef(prefix, cfg, tw, format); err != nil {
		return fmt.Errorf("print usage: %w", err)
	}
	return tw.Flush()
}
