package snapshot

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"

	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/pkg/workload"
)

// Config is the snapshotter's configuration, read from SNAPSHOTTER_* variables.
type Config struct {
	service.Common
	workload.ClientConfig

	CutTimeout                time.Duration `envconfig:"CUT_TIMEOUT" default:"2m" desc:"how long to wait for every snapshot to be cut (status.creationTime) before failing the backup; the Quiesced event's freeze deadline shortens it"`
	ReadyTimeout              time.Duration `envconfig:"READY_TIMEOUT" default:"30m" desc:"how long after the cut every snapshot may take to become readyToUse before the backup fails (step ready); nothing is frozen meanwhile"`
	DefaultSnapshotClass      string        `envconfig:"DEFAULT_SNAPSHOT_CLASS" desc:"VolumeSnapshotClass when neither the request nor the workload's freezeframe.io/snapshot-class annotation names one; empty: the class annotated default for each volume's CSI driver"`
	GroupSnapshots            bool          `envconfig:"GROUP_SNAPSHOTS" default:"true" desc:"cut a workload with several volumes on one CSI driver as one VolumeGroupSnapshot (every volume at the same instant) where the cluster serves groupsnapshot.storage.k8s.io/v1 and the driver has a group class; false: always one VolumeSnapshot per volume"`
	DefaultGroupSnapshotClass string        `envconfig:"DEFAULT_GROUP_SNAPSHOT_CLASS" desc:"VolumeGroupSnapshotClass for group snapshots; empty: the class annotated default for the volumes' CSI driver (none: volumes are snapshotted one by one)"`
	SnapshotsToKeep           int           `envconfig:"SNAPSHOTS_TO_KEEP" default:"0" desc:"complete backups kept per workload when neither the request (policy) nor the workload's freezeframe.io/snapshots-to-keep annotation says; older ones are deleted once a new one is ready; 0 keeps all"`
	Concurrency               int           `envconfig:"CONCURRENCY" default:"1024" desc:"backups snapshotted at once per replica; a Quiesced waiting for a slot keeps its application frozen"`
	ReadyConcurrency          int           `envconfig:"READY_CONCURRENCY" default:"4096" desc:"backups followed to readiness at once per replica (cheap: a watch registration each)"`
	AckWait                   time.Duration `envconfig:"ACK_WAIT" default:"10s" desc:"how long an unacknowledged Quiesced waits before redelivery to another replica (after a crash; heartbeats extend it while a snapshot is taken)"`
	MaxDeliver                int           `envconfig:"MAX_DELIVER" default:"5" desc:"delivery attempts of a Quiesced after transient API errors; the last one reports BackupFailed"`
	RetryMaxDelay             time.Duration `envconfig:"RETRY_MAX_DELAY" default:"2s" desc:"longest backoff between attempts after a transient API error (from 100ms, doubling); the application stays frozen meanwhile"`
	ProgressEvery             time.Duration `envconfig:"PROGRESS_EVERY" default:"1s" desc:"how often the snapshotter tells the watchdogs (key _snapshot.<workload> in the freeze lease bucket) that a frozen workload's snapshot is progressing; a key silent for the hooker's HOOKER_SNAPSHOT_STALL_AFTER resumes the application"`
	Replica                   string        `envconfig:"REPLICA" desc:"this replica's name in progress reports; empty: the host name"`
	RestoreBindTimeout        time.Duration `envconfig:"RESTORE_BIND_TIMEOUT" default:"10m" desc:"how long the claims of a restore may take to be bound before the restore fails (RestoreFailed; the claims are left in place)"`
	RestoreConcurrency        int           `envconfig:"RESTORE_CONCURRENCY" default:"16" desc:"restores handled at once per replica"`
	WatchSyncTimeout          time.Duration `envconfig:"WATCH_SYNC_TIMEOUT" default:"1m" desc:"how long the VolumeSnapshot watch may take to sync at start before the service gives up (usually missing RBAC list/watch on volumesnapshots)"`
}

func (c Config) withDefaults() Config {
	if c.CutTimeout <= 0 {
		c.CutTimeout = 2 * time.Minute
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 30 * time.Minute
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 1024
	}
	if c.ReadyConcurrency <= 0 {
		c.ReadyConcurrency = 4096
	}
	if c.AckWait <= 0 {
		c.AckWait = 10 * time.Second
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 5
	}
	if c.RetryMaxDelay <= 0 {
		c.RetryMaxDelay = 2 * time.Second
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = time.Second
	}
	if c.Replica == "" {
		c.Replica, _ = os.Hostname()
	}
	if c.RestoreBindTimeout <= 0 {
		c.RestoreBindTimeout = 10 * time.Minute
	}
	if c.RestoreConcurrency <= 0 {
		c.RestoreConcurrency = 16
	}
	if c.WatchSyncTimeout <= 0 {
		c.WatchSyncTimeout = time.Minute
	}
	return c
}

// Run is the snapshotter service against a real cluster and NATS: it blocks
// until ctx ends, then drains in-flight backups and the connection.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	rc, kube, err := workload.Clientset(cfg.ClientConfig)
	if err != nil {
		return err
	}
	snaps, err := versioned.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("volumesnapshot client: %w", err)
	}
	bus, err := service.OpenBus(ctx, cfg.Common, "snapshotter", log)
	if err != nil {
		return err
	}
	defer bus.Close()
	svc := New(cfg, Deps{Workloads: workload.NewResolver(kube), Snapshots: snaps, Kube: kube}, bus.Publisher, log)
	return svc.Run(ctx, bus.JetStream)
}
