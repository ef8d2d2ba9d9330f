package freeze

import (
	"os"
	"time"

	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/pkg/workload"
)

// Config is the hooker's configuration (prefix HOOKER_).
type Config struct {
	service.Common
	workload.ClientConfig

	BlueprintNamespace string        `envconfig:"BLUEPRINT_NAMESPACE" default:"freezeframe" desc:"namespace searched for a blueprint after the workload's own (Kanister keeps them in its controller's namespace: set \"kanister\" to reuse those)"`
	HookTimeout        time.Duration `envconfig:"HOOK_TIMEOUT" default:"60s" desc:"default timeout of one hook exec; a phase's \"timeout\" arg overrides it"`
	MaxFreeze          time.Duration `envconfig:"MAX_FREEZE" default:"5m" desc:"longest an application may stay frozen; then it is resumed and the backup fails"`
	Concurrency        int           `envconfig:"CONCURRENCY" default:"1024" desc:"events handled at once"`
	AckWait            time.Duration `envconfig:"ACK_WAIT" default:"10s" desc:"redelivery delay of an event whose handler crashed"`
	Replica            string        `envconfig:"POD_NAME" desc:"this replica's name, recorded as the holder of its freezes (default: host name)"`
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
