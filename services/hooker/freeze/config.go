package freeze

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/pkg/workload"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

// Config is the hooker's configuration (prefix HOOKER_).
type Config struct {
	service.Common
	workload.ClientConfig

	BlueprintNamespaces  []string      `envconfig:"BLUEPRINT_NAMESPACES" desc:"namespaces searched in order, comma-separated, for a workload's blueprint (after the workload's own namespace only with NAMESPACED_BLUEPRINTS); empty: the hooker's own namespace (POD_NAMESPACE), then kanister and kasten-io, where Kanister and K10 keep theirs"`
	BlueprintNamespace   string        `envconfig:"BLUEPRINT_NAMESPACE" desc:"deprecated, use BLUEPRINT_NAMESPACES: the one namespace searched, instead of the default list; ignored when BLUEPRINT_NAMESPACES is set"`
	NamespacedBlueprints bool          `envconfig:"NAMESPACED_BLUEPRINTS" default:"false" desc:"also look for a workload's blueprint in the workload's own namespace, before the blueprint namespaces: whoever may create Blueprints there then chooses the hooks run for it (still confined to its pods, and to Secrets and ConfigMaps of its namespace); off: only the blueprint namespaces, which the platform team owns"`
	ExecAllow            ExecAllowList `envconfig:"EXEC_ALLOW" desc:"pods outside the workload being backed up that hooks may exec into, set by the platform team: namespace:label selector entries separated by semicolons, e.g. db-tools:app=backup-agent; empty: a hook may exec only into the pods of its workload (its namespace, selected by its selector)"`
	Namespace            string        `envconfig:"POD_NAMESPACE" desc:"the namespace the hooker runs in, first of the default BLUEPRINT_NAMESPACES; empty: the service account's namespace in a pod, else freezeframe"`
	HookTimeout          time.Duration `envconfig:"HOOK_TIMEOUT" default:"60s" desc:"default timeout of one hook exec; a phase's \"timeout\" arg overrides it"`
	MaxFreeze            time.Duration `envconfig:"MAX_FREEZE" default:"5m" desc:"longest an application may stay frozen; then it is resumed and the backup fails"`
	Concurrency          int           `envconfig:"CONCURRENCY" default:"1024" desc:"resume triggers handled at once"`
	RequestConcurrency   int           `envconfig:"REQUEST_CONCURRENCY" default:"16" desc:"backups that start freezing at once per replica; low, so that resumes never wait behind pre-hooks"`
	AdmissionDisabled    bool          `envconfig:"ADMISSION_DISABLED" default:"false" desc:"freeze every requested backup at once instead of as its storage (snapshot class) has room: when many are due together, each application then stays frozen for the whole queue of cuts"`
	AdmissionInitial     int           `envconfig:"ADMISSION_INITIAL" default:"4" desc:"freezes in flight at once per snapshot class and replica before any cut was measured; the limit then follows the measured cuts"`
	AdmissionMax         int           `envconfig:"ADMISSION_MAX" default:"64" desc:"most freezes in flight at once per snapshot class and replica, however quick the cuts"`
	AckWait              time.Duration `envconfig:"ACK_WAIT" default:"10s" desc:"redelivery delay of an event whose handler crashed"`
	MaxDeliver           int           `envconfig:"MAX_DELIVER" default:"10" desc:"attempts at one event (a pre-hook's lease wait, a failing post-hook) before the failure is reported; a post-hook that fails its last attempt leaves the freeze to the watchdog, which asks again"`
	RetryMaxDelay        time.Duration `envconfig:"RETRY_MAX_DELAY" default:"30s" desc:"longest wait between two attempts at one event (from 250ms, doubling)"`
	Replica              string        `envconfig:"POD_NAME" desc:"this replica's name, recorded as the holder of its freezes (default: host name)"`
	LeaseBucket          string        `envconfig:"LEASE_BUCKET" default:"freezeframe-freezes" desc:"JetStream key-value bucket holding one freeze lease per frozen workload"`
	LeaseRenewEvery      time.Duration `envconfig:"LEASE_RENEW_EVERY" default:"1s" desc:"how often the replica holding a freeze renews its lease"`
	LeaseStaleAfter      time.Duration `envconfig:"LEASE_STALE_AFTER" default:"10s" desc:"a lease not renewed for this long means its holder is gone: the watchdog unlocks the workload"`
	SnapshotStallAfter   time.Duration `envconfig:"SNAPSHOT_STALL_AFTER" default:"30s" desc:"a frozen workload whose snapshot no snapshotter has reported progress on for this long (since its last report, or since the freeze) is resumed and the backup fails, long before MAX_FREEZE; longer than the snapshotter's ACK_WAIT, so a restarted snapshotter picks the work up first; 0: only MAX_FREEZE applies"`
	WatchdogTick         time.Duration `envconfig:"WATCHDOG_TICK" default:"250ms" desc:"how often the watchdog checks the leases for a passed freeze deadline or a gone holder"`
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

// Where blueprints are looked for when HOOKER_BLUEPRINT_NAMESPACES is not
// set: freezeframe's own namespace, then the namespaces Kanister's
// controller and Kasten K10 install into, which is where blueprints pasted
// from their documentation say they live.
const (
	DefaultNamespace  = "freezeframe"
	KanisterNamespace = "kanister"
	K10Namespace      = "kasten-io"
)

// serviceAccountNamespaceFile holds the pod's namespace in every pod that
// mounts a service account token.
const serviceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// blueprintNamespaces returns the namespaces searched, in order, for a
// blueprint that is not in the workload's own namespace: BLUEPRINT_NAMESPACES,
// else the deprecated BLUEPRINT_NAMESPACE alone, else the hooker's own
// namespace, kanister and kasten-io. saNamespaceFile is read for the hooker's
// own namespace when POD_NAMESPACE is not set.
func (c Config) blueprintNamespaces(saNamespaceFile string) ([]string, error) {
	var list []string
	switch {
	case len(c.BlueprintNamespaces) > 0:
		list = c.BlueprintNamespaces
	case c.BlueprintNamespace != "":
		list = []string{c.BlueprintNamespace}
	default:
		list = []string{c.ownNamespace(saNamespaceFile), KanisterNamespace, K10Namespace}
	}
	var out []string
	var errs []error
	for _, ns := range list {
		ns = strings.TrimSpace(ns)
		if ns == "" || slices.Contains(out, ns) {
			continue
		}
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%q is not a namespace name: %s", ns, strings.Join(msgs, "; ")))
			continue
		}
		out = append(out, ns)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("blueprint namespaces: %w", err)
	}
	if len(out) == 0 {
		return nil, errors.New("blueprint namespaces: HOOKER_BLUEPRINT_NAMESPACES names no namespace")
	}
	return out, nil
}

// ownNamespace is the namespace the hooker runs in: POD_NAMESPACE, else the
// service account's (in a pod), else DefaultNamespace (freezeframe up, or a
// binary run by hand).
func (c Config) ownNamespace(saNamespaceFile string) string {
	if ns := strings.TrimSpace(c.Namespace); ns != "" {
		return ns
	}
	if b, err := os.ReadFile(saNamespaceFile); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return DefaultNamespace
}

// blueprintNamespaceWarning says what became of the deprecated
// BLUEPRINT_NAMESPACE, when it is set.
func (c Config) blueprintNamespaceWarning() string {
	switch {
	case c.BlueprintNamespace == "":
		return ""
	case len(c.BlueprintNamespaces) > 0:
		return "HOOKER_BLUEPRINT_NAMESPACE is deprecated and ignored: HOOKER_BLUEPRINT_NAMESPACES is set"
	}
	return "HOOKER_BLUEPRINT_NAMESPACE is deprecated: set HOOKER_BLUEPRINT_NAMESPACES (comma-separated) instead; it alone replaces the default list"
}

// deadMansSwitchWarning says when the lease settings leave the armed
// post-hooks too little time to run by themselves. The fire limit is the
// freeze record's ValidUntil (half the stale period past a renewal) less
// the clock tolerance; the holder may die up to one renewal period (and a
// write's latency, switchMargin) after its last stored renewal. Below this
// margin a switch may find itself past its limit when its hooker dies, and
// the application then waits for a takeover. (A pod whose date cannot
// tell milliseconds loses up to one second more: see package armed.)
// switchMargin is the slack deadMansSwitchWarning leaves for a renewal's
// write and its push to the armed execs.
const switchMargin = 250 * time.Millisecond

func (c Config) deadMansSwitchWarning() string {
	need := c.LeaseRenewEvery + events.FreezeClockTolerance + switchMargin
	if c.LeaseStaleAfter/2 >= need {
		return ""
	}
	return fmt.Sprintf("HOOKER_LEASE_STALE_AFTER=%s with HOOKER_LEASE_RENEW_EVERY=%s: an armed post-hook may be past its fire limit when its hooker dies, "+
		"and then does not unfreeze the application by itself (the dead man's switch); a stale period of at least %s keeps it working", c.LeaseStaleAfter, c.LeaseRenewEvery, 2*need)
}
