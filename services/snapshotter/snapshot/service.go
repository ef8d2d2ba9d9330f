package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/typed/volumesnapshot/v1"
	"github.com/nats-io/nats.go/jetstream"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/workload"
)

// Durable is the name of the snapshotter's consumer, shared by its replicas.
const Durable = "snapshotter"

// failurePublishTimeout bounds the publish of BackupFailed, which goes out
// even when the handler's context has ended: the application is frozen and
// only this event gets it resumed before the watchdog's deadline.
const failurePublishTimeout = 10 * time.Second

// Publisher publishes backup events; *events.Publisher is one.
type Publisher interface {
	Publish(ctx context.Context, p events.Payload, opts ...events.EventOption) (events.Event, bool, error)
}

// Workloads finds a workload's running pods and the claims they mount;
// *workload.Resolver is one.
type Workloads interface {
	Resolve(ctx context.Context, namespace, kind, name string) (*workload.Info, error)
}

// SnapshotAPI is the CSI VolumeSnapshot API; the external-snapshotter
// clientset (versioned.Interface, or its fake) is one.
type SnapshotAPI interface {
	SnapshotV1() snapclient.SnapshotV1Interface
}

// Deps are the Kubernetes APIs the snapshotter uses.
type Deps struct {
	Workloads Workloads
	Snapshots SnapshotAPI
}

// Service handles Quiesced events: it snapshots the workload's volumes and
// publishes Snapshotted or BackupFailed.
type Service struct {
	cfg  Config
	deps Deps
	pub  Publisher
	log  *slog.Logger
	cuts *cutWatch
	// initErr is an error building the watch, reported by Run.
	initErr error
}

// New returns a service; zero durations and counts in cfg take their
// defaults. Run starts it.
func New(cfg Config, deps Deps, pub Publisher, log *slog.Logger) *Service {
	s := &Service{cfg: cfg.withDefaults(), deps: deps, pub: pub, log: log}
	s.cuts, s.initErr = newCutWatch(deps.Snapshots, log)
	return s
}

// Run follows the cluster's freezeframe VolumeSnapshots, then handles
// Quiesced events from the durable consumer "snapshotter" until ctx ends.
// In-flight backups may finish within the consumer's shutdown grace.
func (s *Service) Run(ctx context.Context, js jetstream.JetStream) error {
	if s.initErr != nil {
		return s.initErr
	}
	// The watch outlives ctx until the consumer has drained: a backup still
	// being handled at shutdown must see its snapshots cut.
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { s.cuts.run(watchCtx) })
	defer func() { stopWatch(); wg.Wait() }()

	syncCtx, cancel := context.WithTimeout(ctx, s.cfg.WatchSyncTimeout)
	defer cancel()
	if !s.cuts.synced(syncCtx) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("volumesnapshot watch not synced within %s: check that the CRDs are installed and the service account may list and watch volumesnapshots.snapshot.storage.k8s.io in all namespaces", s.cfg.WatchSyncTimeout)
	}

	cons, err := events.NewConsumer(ctx, js, events.ConsumerConfig{
		Stream:      s.cfg.NATS.Stream,
		Durable:     Durable,
		Kinds:       []events.Kind{events.KindQuiesced},
		AckWait:     s.cfg.AckWait,
		MaxDeliver:  s.cfg.MaxDeliver,
		Concurrency: s.cfg.Concurrency,
		RetryDelay:  events.ExponentialDelay(100*time.Millisecond, s.cfg.RetryMaxDelay),
		// An interrupted snapshot is redelivered; waiting longer than the
		// operator allows for shutdown helps nobody.
		ShutdownGrace: s.cfg.ShutdownTimeout,
	}, s.handle, s.log)
	if err != nil {
		return err
	}
	s.log.InfoContext(ctx, "snapshotter ready", "cut_timeout", s.cfg.CutTimeout, "default_snapshot_class", s.cfg.DefaultSnapshotClass)
	return cons.Run(ctx)
}

func (s *Service) handle(ctx context.Context, ev events.Event) error {
	q, ok := ev.Payload.(*events.Quiesced)
	if !ok {
		return events.Permanent(fmt.Errorf("handle %s event: the snapshotter handles quiesced only", ev.Kind()))
	}
	log := s.log.With("backup_id", q.BackupID, "workload", q.Workload.String())
	received := time.Now()
	snaps, cutDuration, err := s.snapshot(ctx, q, log)
	if err != nil {
		return s.fail(ctx, q, err, log)
	}
	_, dup, err := s.pub.Publish(ctx, &events.Snapshotted{
		BackupRef:   q.BackupRef,
		Snapshots:   snaps,
		Mode:        events.SnapshotModeVolume,
		CutDuration: events.Duration(cutDuration),
	})
	if err != nil {
		return s.fail(ctx, q, fmt.Errorf("publish snapshotted: %w", classifyPublish(err)), log)
	}
	log.InfoContext(ctx, "snapshotted", "snapshots", len(snaps), "cut_duration", cutDuration,
		"handled_in", time.Since(received), "frozen_so_far", time.Since(q.QuiescedAt), "duplicate", dup)
	return nil
}

// snapshot creates the workload's snapshots and waits until every one is cut.
func (s *Service) snapshot(ctx context.Context, q *events.Quiesced, log *slog.Logger) ([]events.Snapshot, time.Duration, error) {
	deadline, why := time.Now().Add(s.cfg.CutTimeout), "within "+s.cfg.CutTimeout.String()
	if fd := q.FreezeDeadline; !fd.IsZero() && fd.Before(deadline) {
		// A cut after the watchdog resumed the application would not be
		// consistent, so the freeze deadline bounds the wait too.
		deadline, why = fd, "before the freeze deadline "+fd.UTC().Format(time.RFC3339)
	}
	if !time.Now().Before(deadline) {
		return nil, 0, fmt.Errorf("%w: freeze deadline %s passed before the snapshot started", ErrCutTimeout, q.FreezeDeadline.UTC().Format(time.RFC3339))
	}

	w := q.Workload
	kind, err := events.NormalizeKind(w.Kind)
	if err != nil {
		return nil, 0, err
	}
	// The hooker lists the volumes it saw before freezing; asking the API
	// again would put two round trips inside the freeze.
	pvcs := q.Volumes
	if len(pvcs) == 0 {
		info, err := s.deps.Workloads.Resolve(ctx, w.Namespace, kind, w.Name)
		if err != nil {
			return nil, 0, classify(err)
		}
		if len(info.Pods) == 0 {
			return nil, 0, fmt.Errorf("%s %s/%s: %w", kind, w.Namespace, w.Name, workload.ErrNoPods)
		}
		pvcs = info.PVCs()
	}
	if len(pvcs) == 0 {
		return nil, 0, fmt.Errorf("%s %s/%s: %w", kind, w.Namespace, w.Name, ErrNoPVCs)
	}

	var class *string
	switch {
	case q.SnapshotClass != "":
		class = &q.SnapshotClass
	case s.cfg.DefaultSnapshotClass != "":
		class = &s.cfg.DefaultSnapshotClass
	}
	names := make([]string, len(pvcs))
	claims := make(map[string]string, len(pvcs))
	for i, pvc := range pvcs {
		names[i] = SnapshotName(q.BackupID, pvc)
		claims[names[i]] = pvc
	}
	wait := s.cuts.wait(w.Namespace, claims)
	defer wait.stop()

	start := time.Now()
	if err := s.createAll(ctx, q.BackupRef, kind, pvcs, class, wait, log); err != nil {
		return nil, 0, err
	}
	cuts, err := wait.until(ctx, deadline, why)
	if err != nil {
		return nil, 0, err
	}
	cutDuration := time.Since(start)

	out := make([]events.Snapshot, len(pvcs))
	for i, pvc := range pvcs {
		c := cuts[names[i]]
		if c.Class == "" && class != nil {
			c.Class = *class
		}
		out[i] = events.Snapshot{Name: c.Name, Namespace: w.Namespace, PVC: pvc, Class: c.Class, CutAt: c.CutAt}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PVC < out[j].PVC })
	return out, cutDuration, nil
}

// createAll creates one snapshot per claim, all at once. A snapshot that
// exists already and is this backup's is taken as created: the Quiesced was
// delivered before.
func (s *Service) createAll(ctx context.Context, ref events.BackupRef, kind string, pvcs []string, class *string, wait *cutWait, log *slog.Logger) error {
	errs := make([]error, len(pvcs))
	var wg sync.WaitGroup
	for i, pvc := range pvcs {
		wg.Go(func() {
			snap, reused, err := s.create(ctx, newSnapshot(ref, kind, pvc, class), ref.BackupID, pvc)
			if err != nil {
				errs[i] = err
				return
			}
			wait.observe(snap)
			log.DebugContext(ctx, "volumesnapshot created", "snapshot", snap.Name, "pvc", pvc, "reused", reused)
		})
	}
	wg.Wait()
	err := errors.Join(errs...)
	if err == nil {
		return nil
	}
	for _, e := range errs {
		if e != nil && !transientAPI(e) {
			return err
		}
	}
	return &transientError{err}
}

func (s *Service) create(ctx context.Context, snap *snapv1.VolumeSnapshot, backupID, pvc string) (*snapv1.VolumeSnapshot, bool, error) {
	api := s.deps.Snapshots.SnapshotV1().VolumeSnapshots(snap.Namespace)
	created, err := api.Create(ctx, snap, metav1.CreateOptions{})
	if err == nil {
		return created, false, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, false, fmt.Errorf("create volumesnapshot %s/%s of pvc %s: %w", snap.Namespace, snap.Name, pvc, err)
	}
	existing, err := api.Get(ctx, snap.Name, metav1.GetOptions{})
	if err != nil {
		return nil, false, fmt.Errorf("get existing volumesnapshot %s/%s of pvc %s: %w", snap.Namespace, snap.Name, pvc, err)
	}
	if !ownedBy(existing, backupID, pvc) {
		return nil, false, fmt.Errorf("volumesnapshot %s/%s: %w", snap.Namespace, snap.Name, ErrNotOwned)
	}
	return existing, true, nil
}

// fail settles a failed attempt: a transient error is retried while
// deliveries remain; anything else, and the last attempt, becomes a
// BackupFailed that lets the hooker resume the application.
func (s *Service) fail(ctx context.Context, q *events.Quiesced, err error, log *slog.Logger) error {
	d, _ := events.DeliveryOf(ctx)
	if !d.Last() && (ctx.Err() != nil || isTransient(err)) {
		// Shutting down, or the API is briefly unwell: the event is
		// redelivered, here or to another replica, and finds whatever this
		// attempt created.
		log.WarnContext(ctx, "snapshot attempt failed, will retry", "attempt", d.Attempt, "max_deliver", d.MaxDeliver, "err", err)
		return err
	}
	log.WarnContext(ctx, "snapshot failed", "attempt", d.Attempt, "err", err)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), failurePublishTimeout)
	defer cancel()
	if _, _, perr := s.pub.Publish(pctx, &events.BackupFailed{
		BackupRef:     q.BackupRef,
		Step:          events.StepSnapshot,
		Reason:        reason(err),
		ResumePending: true,
	}); perr != nil {
		return fmt.Errorf("publish backup failed after %w: %w", err, perr)
	}
	return nil
}

// classifyPublish marks a failed publish as worth a retry: JetStream may be
// electing a leader or reconnecting.
func classifyPublish(err error) error { return &transientError{err} }

// reason is the error as users read it in BackupFailed: one line, bounded
// in size.
func reason(err error) string {
	const max = 1024
	r := strings.ReplaceAll(err.Error(), "\n", "; ")
	if len(r) > max {
		r = strings.ToValidUTF8(r[:max-3], "") + "..."
	}
	return r
}
