package schedule

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/dynamic"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/pkg/workload"
	"github.com/freezeframe/freezeframe/services/scheduler/policy"
)

// Config is the scheduler's configuration, read from SCHEDULER_* variables.
type Config struct {
	service.Common
	workload.ClientConfig
	// RequestTimeout bounds the Kubernetes check and the publish of one
	// request. The client gives up on a reply after 10s and retries, so a
	// longer timeout only produces answers nobody reads.
	RequestTimeout time.Duration `envconfig:"REQUEST_TIMEOUT" default:"8s" desc:"how long one ad-hoc request may take (workload check and publish); keep below the client's 10s reply timeout"`
	// MaxConcurrentRequests bounds the requests handled at once by one replica.
	MaxConcurrentRequests int `envconfig:"MAX_CONCURRENT_REQUESTS" default:"64" desc:"ad-hoc requests one replica handles at once"`
	// Policies turns the BackupPolicy runner on; it needs the CRD installed
	// and RBAC to list policies and update their status.
	Policies     bool          `envconfig:"POLICIES" default:"true" desc:"run BackupPolicy resources (needs the CRD and RBAC on backuppolicies and backuppolicies/status)"`
	PolicyResync time.Duration `envconfig:"POLICY_RESYNC" default:"30s" desc:"longest wait between two reads of the BackupPolicies (each tick also wakes the scheduler)"`
}

func (c Config) withDefaults() Config {
	if c.Cluster == "" {
		c.Cluster = "default"
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 8 * time.Second
	}
	if c.MaxConcurrentRequests <= 0 {
		c.MaxConcurrentRequests = 64
	}
	if c.PolicyResync <= 0 {
		c.PolicyResync = 30 * time.Second
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 25 * time.Second
	}
	return c
}

// Run builds the scheduler's dependencies from cfg (the Kubernetes client,
// the NATS connection and event stream) and serves until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg = cfg.withDefaults()
	restCfg, kube, err := workload.Clientset(cfg.ClientConfig)
	if err != nil {
		return err
	}
	bus, err := service.OpenBus(ctx, cfg.Common, "scheduler", log)
	if err != nil {
		return err
	}
	defer bus.Close()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return New(cfg, NewKubeWorkloads(kube), bus.Publisher, log).Run(ctx, bus.Conn) })
	if cfg.Policies {
		dyn, err := dynamic.NewForConfig(restCfg)
		if err != nil {
			return fmt.Errorf("dynamic client: %w", err)
		}
		sched := policy.New(policy.Config{Cluster: cfg.Cluster, Resync: cfg.PolicyResync}, dyn, policy.NewKubeLister(kube),
			bus.Publisher, events.NewStreamHistory(bus.JetStream, bus.Stream), policy.SystemClock{}, log)
		g.Go(func() error { return sched.Run(ctx) })
	}
	return g.Wait()
}
