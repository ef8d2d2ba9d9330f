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
	groupclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/typed/volumegroupsnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/typed/volumesnapshot/v1"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/pkg/workload"
)

// Durable is the name of the snapshotter's consumer of Quiesced events,
// shared by its replicas.
const Durable = events.DurableSnapshotter

// ReadyDurable is the name of the consumer that follows each Snapshotted
// until its snapshots are ready. Readiness lives in its own consumer, not in
// the Quiesced handler, so that the cut is acknowledged at once and a crash
// while the storage uploads is picked up from the Snapshotted event.
const ReadyDurable = events.DurableSnapshotterReady

// SharedConsumers are the durables the snapshotter replicas share, as cfg
// sets them: cuts (Quiesced), readiness (Snapshotted) and restores, in that
// order. `freezeframe setup` creates them (events.Setup).
func (c Config) SharedConsumers() []events.ConsumerConfig {
	common := events.ConsumerConfig{
		Stream:     c.NATS.Stream,
		AckWait:    c.AckWait,
		MaxDeliver: c.MaxDeliver,
		RetryDelay: events.ExponentialDelay(100*time.Millisecond, c.RetryMaxDelay),
		// An interrupted snapshot is redelivered; waiting longer than the
		// operator allows for shutdown helps nobody.
		ShutdownGrace: c.ShutdownTimeout,
		Meters:        c.Common.Runtime.Meters,
	}
	cuts, ready, restores := common, common, common
	cuts.Durable, cuts.Kinds, cuts.Concurrency = Durable, []events.Kind{events.KindQuiesced}, c.Concurrency
	ready.Durable, ready.Kinds, ready.Concurrency = ReadyDurable, []events.Kind{events.KindSnapshotted}, c.ReadyConcurrency
	// A readiness wait holds nothing frozen and picks up where it was on
	// redelivery: no reason to delay a shutdown for it.
	ready.ShutdownGrace = readyShutdownGrace
	restores.Durable, restores.Kinds, restores.Concurrency = RestoreDurable, []events.Kind{events.KindRestoreRequested}, c.RestoreConcurrency
	restores.ShutdownGrace = readyShutdownGrace // a redelivered restore finds what it made
	return []events.ConsumerConfig{cuts, ready, restores}
}

// failurePublishTimeout bounds the publish of BackupFailed, which goes out
// even when the handler's context has ended: the application is frozen and
// only this event gets it resumed before the watchdog's deadline.
const failurePublishTimeout = 10 * time.Second

// readyShutdownGrace is how long readiness waits may go on at shutdown:
// long enough for one that just ended to publish its event.
const readyShutdownGrace = 200 * time.Millisecond

// Publisher publishes backup events; *events.Publisher is one.
type Publisher interface {
	Publish(ctx context.Context, p events.Payload, opts ...events.EventOption) (events.Event, bool, error)
}

// Workloads finds a workload's running pods and the claims they mount;
// *workload.Resolver is one.
type Workloads interface {
	Resolve(ctx context.Context, namespace, kind, name string) (*workload.Info, error)
}

// SnapshotAPI is the CSI snapshot API: VolumeSnapshots and, where the
// cluster serves them, VolumeGroupSnapshots. The external-snapshotter
// clientset (versioned.Interface, or its fake) is one.
type SnapshotAPI interface {
	SnapshotV1() snapclient.SnapshotV1Interface
	GroupsnapshotV1() groupclient.GroupsnapshotV1Interface
}

// Deps are the Kubernetes APIs the snapshotter uses.
type Deps struct {
	Workloads Workloads
	Snapshots SnapshotAPI
	// Kube reads claims, storage classes and persistent volumes, labels
	// claims for group snapshots, and discovers the group snapshot API.
	Kube kubernetes.Interface
}

// Service handles Quiesced events: it snapshots the workload's volumes and
// publishes Snapshotted or BackupFailed; then it follows each Snapshotted
// until the snapshots are ready, publishes SnapshotReady and applies the
// workload's retention. It also restores backups: RestoreRequested becomes
// claims from the snapshots, then Restored or RestoreFailed (restore.go).
type Service struct {
	cfg     Config
	deps    Deps
	pub     Publisher
	log     *slog.Logger
	storage *storageIndex
	cuts    *cutWatch
	// groupCuts is nil when the cluster serves no VolumeGroupSnapshot API
	// or group snapshots are turned off.
	groupCuts *cutWatch
	inFlight  inFlight
	metrics   metrics
	progress  *progressReporter
	// book reads the freeze record: the snapshotter cuts only inside a
	// freeze (fence.go).
	book *events.FreezeBook
	// initErr is an error building the watches, reported by Run.
	initErr error
}

// New returns a service; zero durations and counts in cfg take their
// defaults. Run starts it.
func New(cfg Config, deps Deps, pub Publisher, log *slog.Logger) *Service {
	s := &Service{cfg: cfg.withDefaults(), deps: deps, pub: pub, log: log}
	s.metrics = newMetrics(s.cfg.Common)
	groups := s.cfg.GroupSnapshots && servesGroupSnapshots(deps.Kube, log)
	s.storage = newStorageIndex(deps.Kube, deps.Snapshots, groups)
	var errs [2]error
	s.cuts, errs[0] = newVolumeSnapshotWatch(deps.Snapshots, log)
	if groups {
		s.groupCuts, errs[1] = newGroupSnapshotWatch(deps.Snapshots, log)
	}
	s.initErr = errors.Join(errs[:]...)
	return s
}

// servesGroupSnapshots asks the API server whether it serves the
// VolumeGroupSnapshot API the snapshot controller reconciles.
func servesGroupSnapshots(kube kubernetes.Interface, log *slog.Logger) bool {
	rl, err := kube.Discovery().ServerResourcesForGroupVersion(groupSnapshotGV)
	if err != nil {
		if !apierrors.IsNotFound(err) {
			log.Warn("cannot tell whether the cluster serves group snapshots; snapshotting volumes one by one", "group_version", groupSnapshotGV, "err", err)
		}
		return false
	}
	for _, r := range rl.APIResources {
		if r.Name == "volumegroupsnapshots" {
			return true
		}
	}
	return false
}

// Run follows the cluster's freezeframe snapshots, claims and classes, then
// handles Quiesced events (durable consumer "snapshotter") and Snapshotted
// events (durable consumer "snapshotter-ready") until ctx ends. In-flight
// backups may finish within the consumers' shutdown grace.
func (s *Service) Run(ctx context.Context, js jetstream.JetStream) error {
	if s.initErr != nil {
		return s.initErr
	}
	// The watches outlive ctx until the consumers have drained: a backup
	// still being handled at shutdown must see its snapshots cut.
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	watches := []*cutWatch{s.cuts}
	if s.groupCuts != nil {
		watches = append(watches, s.groupCuts)
	}
	for _, w := range watches {
		wg.Go(func() { w.run(watchCtx) })
	}
	wg.Go(func() { s.storage.run(watchCtx) })
	defer func() { stopWatch(); wg.Wait() }()

	syncCtx, cancel := context.WithTimeout(ctx, s.cfg.WatchSyncTimeout)
	defer cancel()
	synced := s.storage.synced(syncCtx)
	for _, w := range watches {
		synced = synced && w.synced(syncCtx)
	}
	if !synced {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("watches not synced within %s: check that the snapshot CRDs are installed and the service account may list and watch volumesnapshots, volumesnapshotclasses, persistentvolumeclaims and storageclasses in all namespaces (and the groupsnapshot.storage.k8s.io resources where served)", s.cfg.WatchSyncTimeout)
	}

	shared := s.cfg.SharedConsumers()
	cuts, ready, restores := shared[0], shared[1], shared[2]
	s.book = events.NewFreezeBook(js, "")
	// Bound now, not inside the first backup's freeze (the hooker may
	// create the buckets after this starts).
	go func() { _ = s.book.Bind(ctx) }()
	s.progress = &progressReporter{book: s.book, replica: s.cfg.Replica, every: s.cfg.ProgressEvery, log: s.log}
	var cutCons, readyCons, restoreCons *events.Consumer
	if err := service.AwaitSetUp(ctx, s.log, "bind the snapshotter's consumers", func(ctx context.Context) (err error) {
		if cutCons, err = events.NewConsumer(ctx, js, cuts, s.handle, s.log); err != nil {
			return err
		}
		if readyCons, err = events.NewConsumer(ctx, js, ready, s.handleSnapshotted, s.log); err != nil {
			return err
		}
		restoreCons, err = events.NewConsumer(ctx, js, restores, s.handleRestore, s.log)
		return err
	}); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "snapshotter ready", "cut_timeout", s.cfg.CutTimeout, "ready_timeout", s.cfg.ReadyTimeout,
		"group_snapshots", s.groupCuts != nil, "default_snapshot_class", s.cfg.DefaultSnapshotClass, "snapshots_to_keep", s.cfg.SnapshotsToKeep)
	stream := s.cfg.NATS.Stream
	if stream == "" {
		stream = events.DefaultStream
	}
	lag, err := service.ObserveConsumers(s.cfg.Common, js, stream, Durable, ReadyDurable, RestoreDurable)
	if err != nil {
		return err
	}
	defer func() { _ = lag.Unregister() }()
	s.cfg.Runtime.Probe.Ready(js.Conn())
	defer s.cfg.Runtime.Probe.NotReady()
	errs := make(chan error, 3)
	go func() { errs <- cutCons.Run(ctx) }()
	go func() { errs <- readyCons.Run(ctx) }()
	go func() { errs <- restoreCons.Run(ctx) }()
	return errors.Join(<-errs, <-errs, <-errs)
}

func (s *Service) handle(ctx context.Context, ev events.Event) error {
	q, ok := ev.Payload.(*events.Quiesced)
	if !ok {
		return events.Permanent(fmt.Errorf("handle %s event: the snapshotter handles quiesced only", ev.Kind()))
	}
	log := s.log.With("backup_id", q.BackupID, "workload", q.Workload.String(), "epoch", q.FreezeEpoch)
	defer s.inFlight.add(q.BackupID)()
	received := time.Now()
	if err := s.checkFrozen(ctx, q); err != nil {
		if nf := (*events.NotFrozenError)(nil); errors.As(err, &nf) && nf.Held {
			// Still frozen, but its record no longer vouches for it (the
			// holder's renewals are overdue, or the cap passed): nothing is
			// cut, and the backup fails now so that the application is
			// resumed now, not at its cap.
			return s.fail(ctx, q, err, log)
		}
		if errors.Is(err, events.ErrNotFrozen) {
			// Late, redelivered or forged: nothing is cut. What an earlier
			// attempt of this Quiesced cut goes if the backup ended in
			// failure (its Snapshotted was never stored, say); a backup
			// that ended well keeps everything.
			log.WarnContext(ctx, "not cutting: the application is not frozen for this backup", "err", err)
			if end, eerr := s.book.Ended(ctx, q.BackupRef); eerr == nil && !end.Succeeded {
				if derr := s.discardPersistently(ctx, q.BackupRef, false, log); derr != nil {
					return derr
				}
			}
			return events.Permanent(err)
		}
		return s.fail(ctx, q, err, log)
	}
	stopProgress := s.progress.start(ctx, q)
	out, err := s.snapshot(ctx, q, log)
	stopProgress()
	if err != nil {
		return s.fail(ctx, q, err, log)
	}
	if err := s.checkFrozen(ctx, q); err != nil {
		if s.endedWell(ctx, q.BackupRef) {
			return nil // another delivery of this Quiesced finished the backup
		}
		if !errors.Is(err, events.ErrNotFrozen) {
			return s.fail(ctx, q, err, log)
		}
		return s.fail(ctx, q, fmt.Errorf("%w: %w", errFreezeEnded, err), log)
	}
	out.SnapshotsToKeep = q.SnapshotsToKeep
	if out.SnapshotsToKeep == 0 {
		out.SnapshotsToKeep = s.cfg.SnapshotsToKeep
	}
	_, dup, err := s.pub.Publish(ctx, out)
	if err != nil {
		return s.fail(ctx, q, fmt.Errorf("publish snapshotted: %w", classifyPublish(err)), log)
	}
	if !dup {
		s.metrics.recordCut(ctx, out.Mode, out.CutDuration.Std())
	}
	log.InfoContext(ctx, "snapshotted", "mode", out.Mode, "group", out.Group, "snapshots", len(out.Snapshots), "cut_duration", out.CutDuration.Std(),
		"handled_in", time.Since(received), "frozen_so_far", time.Since(q.QuiescedAt), "duplicate", dup)
	return nil
}

// snapshot creates the workload's snapshots and waits until every one is
// cut: one VolumeGroupSnapshot when the claims share a CSI driver that has
// a group snapshot class, else one VolumeSnapshot per claim.
func (s *Service) snapshot(ctx context.Context, q *events.Quiesced, log *slog.Logger) (*events.Snapshotted, error) {
	deadline, why := time.Now().Add(s.cfg.CutTimeout), "within "+s.cfg.CutTimeout.String()
	if fd := q.FreezeDeadline; !fd.IsZero() && fd.Before(deadline) {
		// A cut after the watchdog resumed the application would not be
		// consistent, so the freeze deadline bounds the wait too.
		deadline, why = fd, "before the freeze deadline "+fd.UTC().Format(time.RFC3339)
	}
	if !time.Now().Before(deadline) {
		return nil, fmt.Errorf("%w: freeze deadline %s passed before the snapshot started", ErrCutTimeout, q.FreezeDeadline.UTC().Format(time.RFC3339))
	}

	w := q.Workload
	kind, err := events.NormalizeKind(w.Kind)
	if err != nil {
		return nil, err
	}
	// The hooker lists the volumes it saw before freezing; asking the API
	// again would put two round trips inside the freeze.
	pvcs := q.Volumes
	if len(pvcs) == 0 {
		info, err := s.deps.Workloads.Resolve(ctx, w.Namespace, kind, w.Name)
		if err != nil {
			return nil, classify(err)
		}
		if len(info.Pods) == 0 {
			return nil, fmt.Errorf("%s %s/%s: %w", kind, w.Namespace, w.Name, workload.ErrNoPods)
		}
		pvcs = info.PVCs()
	}
	if len(pvcs) == 0 {
		return nil, fmt.Errorf("%s %s/%s: %w", kind, w.Namespace, w.Name, ErrNoPVCs)
	}
	sort.Strings(pvcs)

	claims := make([]claim, len(pvcs))
	drivers := map[string]bool{}
	for i, pvc := range pvcs {
		if claims[i], err = s.storage.claim(ctx, w.Namespace, pvc); err != nil {
			return nil, err
		}
		drivers[claims[i].Driver] = true
	}
	// Naming a VolumeSnapshotClass (request or annotation) asks for volume
	// snapshots of that class; otherwise several claims on one driver are
	// cut as a group where the cluster can.
	if len(pvcs) > 1 && len(drivers) == 1 && s.groupCuts != nil && q.SnapshotClass == "" {
		groupClass, err := s.storage.groupSnapshotClass(s.cfg.DefaultGroupSnapshotClass, claims[0].Driver)
		if err != nil {
			return nil, err
		}
		if groupClass != "" {
			return s.snapshotGroup(ctx, q, kind, pvcs, groupClass, deadline, why, log)
		}
	}
	return s.snapshotVolumes(ctx, q, kind, claims, deadline, why, log)
}

// snapshotVolumes creates one VolumeSnapshot per claim, all at once, and
// waits until every one is cut.
func (s *Service) snapshotVolumes(ctx context.Context, q *events.Quiesced, kind string, claims []claim, deadline time.Time, why string, log *slog.Logger) (*events.Snapshotted, error) {
	asked := q.SnapshotClass
	if asked == "" {
		asked = s.cfg.DefaultSnapshotClass
	}
	classes := make([]string, len(claims))
	names := make(map[string]string, len(claims))
	for i, c := range claims {
		var err error
		if classes[i], err = s.storage.snapshotClass(asked, c.Driver); err != nil {
			return nil, fmt.Errorf("persistentvolumeclaim %s/%s: %w", q.Workload.Namespace, c.Name, err)
		}
		names[SnapshotName(q.BackupID, c.Name)] = c.Name
	}
	wait := s.cuts.wait(q.Workload.Namespace, names)
	defer wait.stop()

	start := time.Now()
	if err := s.createAll(ctx, q.BackupRef, kind, claims, classes, wait, log); err != nil {
		return nil, err
	}
	cuts, err := s.waitCut(ctx, q.BackupID, wait, deadline, why)
	if err != nil {
		return nil, err
	}
	out := &events.Snapshotted{BackupRef: q.BackupRef, Mode: events.SnapshotModeVolume, CutDuration: events.Duration(time.Since(start))}
	for i, c := range claims {
		name := SnapshotName(q.BackupID, c.Name)
		out.Snapshots = append(out.Snapshots, events.Snapshot{Name: name, Namespace: q.Workload.Namespace, PVC: c.Name, Class: classes[i], CutAt: cuts[name].CutAt})
	}
	return out, nil
}

// snapshotGroup cuts every claim at one instant with a VolumeGroupSnapshot.
func (s *Service) snapshotGroup(ctx context.Context, q *events.Quiesced, kind string, pvcs []string, class string, deadline time.Time, why string, log *slog.Logger) (*events.Snapshotted, error) {
	ns := q.Workload.Namespace
	value := volumeGroupValue(q.Workload, pvcs)
	name := GroupSnapshotName(q.BackupID)
	wait := s.groupCuts.wait(ns, map[string]string{name: strings.Join(pvcs, ",")})
	defer wait.stop()

	start := time.Now()
	if err := s.labelClaims(ctx, ns, pvcs, value); err != nil {
		return nil, err
	}
	g, err := s.createGroup(ctx, newGroupSnapshot(q.BackupRef, kind, class, value), q.BackupID)
	if err != nil {
		return nil, err
	}
	wait.observe(g)
	log.DebugContext(ctx, "volumegroupsnapshot created", "group", g.Name, "claims", pvcs)
	cuts, err := s.waitCut(ctx, q.BackupID, wait, deadline, why)
	if err != nil {
		return nil, err
	}
	out := &events.Snapshotted{BackupRef: q.BackupRef, Mode: events.SnapshotModeGroup, Group: name, GroupClass: class, CutDuration: events.Duration(time.Since(start))}
	for _, pvc := range pvcs {
		out.Snapshots = append(out.Snapshots, events.Snapshot{Namespace: ns, PVC: pvc, CutAt: cuts[name].CutAt})
	}
	return out, nil
}

// waitCut waits for the cut under a span of its own: in a trace, the
// storage's share of the freeze.
func (s *Service) waitCut(ctx context.Context, backupID string, wait *cutWait, deadline time.Time, why string) (_ map[string]cut, err error) {
	ctx, span := s.metrics.tracer.Start(ctx, "wait for the cut", trace.WithAttributes(attribute.String("freezeframe.backup_id", backupID)))
	defer func() { endSpan(span, err) }()
	return wait.until(ctx, stageCut, deadline, ErrCutTimeout, why)
}

// createAll creates one snapshot per claim, all at once. A snapshot that
// exists already and is this backup's is taken as created: the Quiesced was
// delivered before.
func (s *Service) createAll(ctx context.Context, ref events.BackupRef, kind string, claims []claim, classes []string, wait *cutWait, log *slog.Logger) error {
	errs := make([]error, len(claims))
	var wg sync.WaitGroup
	for i, c := range claims {
		wg.Go(func() {
			pvc := c.Name
			snap, reused, err := s.create(ctx, newSnapshot(ref, kind, pvc, &classes[i]), ref.BackupID, pvc)
			if err != nil {
				errs[i] = err
				return
			}
			wait.observe(snap)
			log.DebugContext(ctx, "volumesnapshot created", "snapshot", snap.Name, "pvc", pvc, "reused", reused)
		})
	}
	wg.Wait()
	for i, e := range errs {
		errs[i] = classify(e)
	}
	return joinClassified(errs)
}

func (s *Service) create(ctx context.Context, snap *snapv1.VolumeSnapshot, backupID, pvc string) (_ *snapv1.VolumeSnapshot, _ bool, err error) {
	ctx, span := s.metrics.tracer.Start(ctx, "create volumesnapshot", trace.WithAttributes(
		attribute.String("freezeframe.backup_id", backupID), attribute.String("k8s.namespace.name", snap.Namespace), attribute.String("freezeframe.snapshot", snap.Name), attribute.String("freezeframe.pvc", pvc)))
	defer func() { endSpan(span, err) }()
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
	// A snapshot cut after the application was resumed would look like a
	// good backup and not be one: whatever this backup created goes, once
	// the resume is under way.
	return s.discardPersistently(ctx, q.BackupRef, true, log)
}

// endSpan ends a span, marking it failed when err is not nil.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
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
