package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/workload"
)

// Lister lists the workloads a policy may select.
type Lister interface {
	List(ctx context.Context, namespace, kind string, sel labels.Selector) ([]Workload, error)
}

// Publisher publishes events; *events.Publisher is one.
type Publisher interface {
	Publish(ctx context.Context, p events.Payload, opts ...events.EventOption) (events.Event, bool, error)
}

// History finds the last event of a kind for a backup, or an error wrapping
// events.ErrNoEvent.
type History interface {
	Lookup(ctx context.Context, k events.Kind, ref events.BackupRef) (events.Event, error)
}

// Clock tells the time and waits; tests control it.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

// After implements Clock.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config tunes a Scheduler.
type Config struct {
	Cluster string
	// Resync is the longest wait between two reads of the policies.
	Resync time.Duration
}

// Scheduler runs the BackupPolicies of a cluster.
type Scheduler struct {
	cfg     Config
	dyn     dynamic.Interface
	lister  Lister
	pub     Publisher
	history History
	clock   Clock
	log     *slog.Logger
}

// New returns a scheduler.
func New(cfg Config, dyn dynamic.Interface, l Lister, pub Publisher, h History, clock Clock, log *slog.Logger) *Scheduler {
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	return &Scheduler{cfg: cfg, dyn: dyn, lister: l, pub: pub, history: h, clock: clock, log: log}
}

// Run reconciles every policy until ctx ends: at each policy's next tick,
// and at least every Resync.
func (s *Scheduler) Run(ctx context.Context) error {
	s.log.InfoContext(ctx, "running backup policies", "resync", s.cfg.Resync)
	for {
		next, err := s.Reconcile(ctx, s.clock.Now())
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "reconcile backup policies", "err", err)
		}
		wait := s.cfg.Resync
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(s.clock.Now()), 0))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.clock.After(wait):
		}
	}
}

// Reconcile runs every policy due at now and updates its status. It
// returns the earliest next tick of all policies (zero when none).
func (s *Scheduler) Reconcile(ctx context.Context, now time.Time) (time.Time, error) {
	list, err := s.dyn.Resource(GVR).Namespace(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return time.Time{}, fmt.Errorf("list backup policies: %w", err)
	}
	var (
		earliest time.Time
		errs     []error
	)
	for i := range list.Items {
		next, err := s.reconcileOne(ctx, &list.Items[i], now)
		if err != nil {
			errs = append(errs, err)
		}
		if !next.IsZero() && (earliest.IsZero() || next.Before(earliest)) {
			earliest = next
		}
	}
	return earliest, errors.Join(errs...)
}

func (s *Scheduler) reconcileOne(ctx context.Context, u *unstructured.Unstructured, now time.Time) (time.Time, error) {
	p, err := FromUnstructured(u)
	if err != nil {
		return time.Time{}, err
	}
	log := s.log.With("policy", p.Namespace+"/"+p.Name)
	st := p.Status
	st.ObservedGeneration = p.Generation
	sched, err := ParseSchedule(p.Spec.Schedule, p.Spec.TimeZone)
	if err == nil {
		// Every request would be refused for it: say so once, here.
		err = events.ValidateOptions(p.Spec.Options)
	}
	if err != nil {
		st.Message = err.Error()
		st.NextScheduleTime = nil
		return time.Time{}, s.writeStatus(ctx, u, p, st)
	}
	st.Message = ""
	if p.Spec.Paused {
		st.Message = "paused"
		st.NextScheduleTime = nil
		s.refreshResult(ctx, p, &st)
		return time.Time{}, s.writeStatus(ctx, u, p, st)
	}
	last := p.CreationTimestamp.Time
	if st.LastScheduleTime != nil && st.LastScheduleTime.After(last) {
		last = st.LastScheduleTime.Time
	}
	tick, missed := dueTick(sched, last, now)
	if !tick.IsZero() {
		if missed > 0 {
			log.WarnContext(ctx, "missed ticks while no scheduler ran; running the latest once",
				"missed", missed, "since", last.UTC().Format(time.RFC3339), "tick", tick.Format(time.RFC3339))
		}
		run, err := s.runTick(ctx, p, tick, log)
		if err != nil {
			// The status is not advanced: the next reconcile retries the
			// same tick with the same ids.
			return now, err
		}
		st.LastScheduleTime = &metav1.Time{Time: tick}
		st.LastRun = run
		st.MissedTicks = missed
		st.LastResult = nil
	}
	next := sched.Next(now)
	st.NextScheduleTime = &metav1.Time{Time: next}
	s.refreshResult(ctx, p, &st)
	return next, s.writeStatus(ctx, u, p, st)
}

// dueTick returns the latest tick in (last, now], and how many earlier
// ticks in that interval it stands for; zero when none is due.
func dueTick(sched Schedule, last, now time.Time) (tick time.Time, missed int) {
	t := sched.Next(last)
	if t.IsZero() || t.After(now) {
		return time.Time{}, 0
	}
	for {
		n := sched.Next(t)
		if n.After(now) || n.IsZero() {
			return t, missed
		}
		t = n
		missed++
		if missed > 100000 { // @every 1m over months: jump close to now
			return sched.Next(now.Add(-time.Minute)), missed
		}
	}
}

// runTick requests a backup of each selected workload.
func (s *Scheduler) runTick(ctx context.Context, p *Policy, tick time.Time, log *slog.Logger) (*Run, error) {
	ws, err := s.selectWorkloads(ctx, p)
	if err != nil {
		return nil, err
	}
	run := &Run{Tick: metav1.Time{Time: tick}}
	var errs []error
	for _, w := range ws {
		ref := events.BackupRef{
			BackupID: BackupID(p, w, tick),
			Workload: events.Workload{Cluster: s.cfg.Cluster, Namespace: w.Namespace, Kind: w.Kind, Name: w.Name},
		}
		run.Backups = append(run.Backups, RunBackup{BackupID: ref.BackupID, Workload: w.Namespace + "/" + strings.ToLower(w.Kind) + "/" + w.Name})
		req := &events.BackupRequested{
			BackupRef:       ref,
			RequestedBy:     "policy/" + p.Namespace + "/" + p.Name,
			Blueprint:       p.Spec.Blueprint,
			SnapshotClass:   p.Spec.SnapshotClass,
			SnapshotsToKeep: p.Spec.SnapshotsToKeep,
			Options:         p.Spec.Options,
		}
		if p.Spec.MaxFreeze != nil {
			req.MaxFreeze = events.Duration(p.Spec.MaxFreeze.Duration)
		}
		var payload events.Payload = req
		if bp, _ := workload.BlueprintOf(p.Spec.Blueprint, w.Annotations); bp == "" {
			// Not silence: the backup ends, and says why.
			payload = &events.BackupFailed{BackupRef: ref, Step: events.StepRequest,
				Reason: fmt.Sprintf("%s %s/%s has no blueprint: annotate it with %s=<blueprint> or set spec.blueprint in the policy", w.Kind, w.Namespace, w.Name, workload.AnnotationKanisterBlueprint)}
		}
		_, dup, err := s.pub.Publish(ctx, payload)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		log.InfoContext(ctx, "scheduled backup", "backup_id", ref.BackupID, "workload", ref.Workload.String(),
			"tick", tick.Format(time.RFC3339), "duplicate", dup, "refused", payload != events.Payload(req))
	}
	if len(ws) == 0 {
		log.InfoContext(ctx, "policy selects no workload", "tick", tick.Format(time.RFC3339))
	}
	return run, errors.Join(errs...)
}

func (s *Scheduler) selectWorkloads(ctx context.Context, p *Policy) ([]Workload, error) {
	sel, err := p.Spec.Selection.Selector()
	if err != nil {
		return nil, fmt.Errorf("policy %s/%s: label selector: %w", p.Namespace, p.Name, err)
	}
	kinds, err := p.Spec.Selection.WorkloadKinds()
	if err != nil {
		return nil, fmt.Errorf("policy %s/%s: %w", p.Namespace, p.Name, err)
	}
	var out []Workload
	for _, ns := range p.Spec.Selection.NamespacesFor(p.Namespace) {
		for _, k := range kinds {
			ws, err := s.lister.List(ctx, ns, k, sel)
			if err != nil {
				return nil, err
			}
			out = append(out, ws...)
		}
	}
	slices.SortFunc(out, func(a, b Workload) int {
		return strings.Compare(a.Namespace+"/"+a.Kind+"/"+a.Name, b.Namespace+"/"+b.Kind+"/"+b.Name)
	})
	return out, nil
}

var unsafeID = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// BackupID is the id of the backup a policy requests for a workload at a
// tick: the same on every replica, so that their requests are one event. It
// reads as <policy>-<tick>-<hash>.
func BackupID(p *Policy, w Workload, tick time.Time) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{p.Namespace, p.Name, string(p.UID), w.Namespace, w.Kind, w.Name, tick.UTC().Format(time.RFC3339)}, "\n")))
	name := strings.Trim(unsafeID.ReplaceAllString(p.Name, "-"), "-_")
	if len(name) > 60 {
		name = name[:60]
	}
	if name == "" {
		name = "policy"
	}
	return name + "-" + tick.UTC().Format("20060102t1504") + "-" + hex.EncodeToString(sum[:6])
}

// refreshResult sums up how the last run's backups ended, from the events.
func (s *Scheduler) refreshResult(ctx context.Context, p *Policy, st *Status) {
	if st.LastRun == nil || s.history == nil || len(st.LastRun.Backups) == 0 {
		return
	}
	if st.LastResult != nil && st.LastResult.Running == 0 {
		return // final
	}
	var r Result
	for _, b := range st.LastRun.Backups {
		ns, rest, _ := strings.Cut(b.Workload, "/")
		kind, name, _ := strings.Cut(rest, "/")
		k, _ := events.NormalizeKind(kind)
		ref := events.BackupRef{BackupID: b.BackupID, Workload: events.Workload{Cluster: s.cfg.Cluster, Namespace: ns, Kind: k, Name: name}}
		switch s.outcome(ctx, ref) {
		case "succeeded":
			r.Succeeded++
		case "failed":
			r.Failed++
		default:
			r.Running++
		}
	}
	switch {
	case r.Running > 0:
		r.Phase = "Running"
	case r.Failed == 0:
		r.Phase = "Succeeded"
	case r.Succeeded == 0:
		r.Phase = "Failed"
	default:
		r.Phase = "PartiallyFailed"
	}
	st.LastResult = &r
}

func (s *Scheduler) outcome(ctx context.Context, ref events.BackupRef) string {
	for _, k := range []events.Kind{events.KindResumed, events.KindFailed} {
		ev, err := s.history.Lookup(ctx, k, ref)
		if err != nil {
			continue
		}
		if events.IsTerminal(ev) {
			if events.Succeeded(ev) {
				return "succeeded"
			}
			return "failed"
		}
	}
	return "running"
}

// writeStatus updates the status subresource when it changed. A conflict
// means another replica wrote it first: nothing to do.
func (s *Scheduler) writeStatus(ctx context.Context, u *unstructured.Unstructured, p *Policy, st Status) error {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
	if err != nil {
		return fmt.Errorf("encode status of %s/%s: %w", p.Namespace, p.Name, err)
	}
	old, _, _ := unstructured.NestedMap(u.Object, "status")
	if equalJSON(old, obj) {
		return nil
	}
	u = u.DeepCopy()
	if err := unstructured.SetNestedMap(u.Object, obj, "status"); err != nil {
		return err
	}
	_, err = s.dyn.Resource(GVR).Namespace(p.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update status of %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}

func equalJSON(a, b map[string]any) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}
