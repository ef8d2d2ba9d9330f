package freeze

import (
	"os"
	"time"

	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/pkg/workload"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

// Config is the hooker's configuration (prefix HOOKER_).
type Config struct {
	service.Common
	workload.ClientConfig

	BlueprintNamespace string        `envconfig:"BLUEPRINT_NAMESPACE" default:"freezeframe" desc:"namespace searched for a blueprint after the workload's own (Kanister keeps them in its controller's namespace: set \"kanister\" to reuse those)"`
	HookTimeout        time.Duration `envconfig:"HOOK_TIMEOUT" default:"60s" desc:"default timeout of one hook exec; a phase's \"timeout\" arg overrides it"`
	MaxFreeze          time.Duration `envconfig:"MAX_FREEZE" default:"5m" desc:"longest an application may stay frozen; then it is resumed and the backup fails"`
	Concurrency        int           `envconfig:"CONCURRENCY" default:"1024" desc:"resume triggers handled at once"`
	RequestConcurrency int           `envconfig:"REQUEST_CONCURRENCY" default:"16" desc:"backups that start freezing at once per replica; low, so that resumes never wait behind pre-hooks"`
	AckWait            time.Duration `envconfig:"ACK_WAIT" default:"10s" desc:"redelivery delay of an event whose handler crashed"`
	MaxDeliver         int           `envconfig:"MAX_DELIVER" default:"10" desc:"attempts at one event (a pre-hook's lease wait, a failing post-hook) before the failure is reported; a post-hook that fails its last attempt leaves the freeze to the watchdog, which asks again"`
	RetryMaxDelay      time.Duration `envconfig:"RETRY_MAX_DELAY" default:"30s" desc:"longest wait between two attempts at one event (from 250ms, doubling)"`
	Replica            string        `envconfig:"POD_NAME" desc:"this replica's name, recorded as the holder of its freezes (default: host name)"`
	LeaseBucket        string        `envconfig:"LEASE_BUCKET" default:"freezeframe-freezes" desc:"JetStream key-value bucket holding one freeze lease per frozen workload"`
	LeaseRenewEvery    time.Duration `envconfig:"LEASE_RENEW_EVERY" default:"1s" desc:"how often the replica holding a freeze renews its lease"`
	LeaseStaleAfter    time.Duration `envconfig:"LEASE_STALE_AFTER" default:"10s" desc:"a lease not renewed for this long means its holder is gone: the watchdog unlocks the workload"`
	SnapshotStallAfter time.Duration `envconfig:"SNAPSHOT_STALL_AFTER" default:"30s" desc:"a frozen workload whose snapshot no snapshotter has reported progress on for this long (since its last report, or since the freeze) is resumed and the backup fails, long before MAX_FREEZE; longer than the snapshotter's ACK_WAIT, so a restarted snapshotter picks the work up first; 0: only MAX_FREEZE applies"`
	WatchdogTick       time.Duration `envconfig:"WATCHDOG_TICK" default:"250ms" desc:"how often the watchdog checks the leases for a passed freeze deadline or a gone holder"`
}

// leaseConfig configures the freeze record. Ends are remembered as long as
// the stream keeps the requests that could replay them: streamMaxAge, as
// the stream itself says (0: for ever).
func (c Config) leaseConfig(streamMaxAge time.Duration) lease.Config {
	ended := streamMaxAge
	if ended == 0 {
		ended = lease.EndedForever
	}
	return lease.Config{Bucket: c.LeaseBucket, Replicas: c.NATS.StreamReplicas, RenewEvery: c.LeaseRenewEvery, StaleAfter: c.LeaseStaleAfter, EndedTTL: ended}
}

func (c Config) replica() string {
	if c.Replica != "" {
		return c.Replica
	}
	h, err := os.Hostname()
	if err != nil {
		return "hooker"
	}
	return h
}
