package freeze

// Freeze admission (issue 16, item 3): a request waits, with nothing frozen
// and nothing held, until the storage its snapshot goes to has room for one
// more freeze (admission.Gate), so that when many backups are due at once
// each application is frozen just in time for its own cut instead of for
// the whole queue in front of it.
//
// Ownership: the op owns its slot from admission to its end. ops.remove is
// where every op ends (finished, failed before freezing, lost, taken over),
// and it gives the slot back; a slot is given back once however often it
// is asked. A freeze whose post-hook failed keeps its slot: it is still
// frozen.

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/services/hooker/admission"
)

// Admission metric names.
const (
	// MetricAdmissionLimit: freezes this replica lets be in flight at once
	// on one storage (snapshot class), as learned from its cuts.
	MetricAdmissionLimit = "freezeframe_admission_limit"
	// MetricAdmissionInFlight: freezes in flight (admitted, not ended) on
	// one storage in this replica.
	MetricAdmissionInFlight = "freezeframe_admission_in_flight"
	// MetricAdmissionWaiting: requests waiting, unfrozen, for their turn.
	MetricAdmissionWaiting = "freezeframe_admission_waiting"
	// MetricAdmissionCutBaseline: the shortest recent cut the limit
	// compares each cut with.
	MetricAdmissionCutBaseline = "freezeframe_admission_cut_baseline_seconds"
	// MetricAdmissionWait: how long each admitted request waited.
	MetricAdmissionWait = "freezeframe_admission_wait_seconds"
)

// storageKey names what the freezes of p share a storage with: its snapshot
// class. The hooker does not know the CSI driver (the snapshotter resolves
// classes and claims); a class is one driver with one set of parameters,
// and "" is each volume's default class, counted as one storage.
func storageKey(p *plan) string { return p.class }

// storageLabel is storageKey as metrics and logs show it.
func storageLabel(key string) string {
	if key == "" {
		return "(default)"
	}
	return key
}

// admissionConfig checks and converts the admission keys.
func (c Config) admissionConfig() (admission.Config, error) {
	switch {
	case c.AdmissionInitial < 0:
		return admission.Config{}, fmt.Errorf("HOOKER_ADMISSION_INITIAL %d: want a positive number of freezes", c.AdmissionInitial)
	case c.AdmissionMax < 0:
		return admission.Config{}, fmt.Errorf("HOOKER_ADMISSION_MAX %d: want a positive number of freezes", c.AdmissionMax)
	case c.AdmissionMax > 0 && c.AdmissionInitial > c.AdmissionMax:
		return admission.Config{}, fmt.Errorf("HOOKER_ADMISSION_INITIAL %d is above HOOKER_ADMISSION_MAX %d", c.AdmissionInitial, c.AdmissionMax)
	}
	return admission.Config{Disabled: c.AdmissionDisabled, Initial: c.AdmissionInitial, Max: c.AdmissionMax}, nil
}

// newGate makes the replica's gate. A config Run would refuse still makes
// a gate (with the defaults), so that New never fails.
func newGate(c Config) *admission.Gate {
	cfg, err := c.admissionConfig()
	if err != nil {
		cfg = admission.Config{Disabled: c.AdmissionDisabled}
	}
	return admission.NewGate(cfg, nil)
}

// admit waits for room to freeze o on p's storage and gives o its slot.
// Nothing is frozen or held meanwhile: no lease, so no watchdog counts the
// request as a freeze; its message is kept alive by the consumer's
// in-progress heartbeat, and redelivered if this replica dies. The wait
// ends with ctx or the gate's closing at shutdown; the request is then
// retried (redelivered), like any other failure before the freeze.
func (s *Service) admit(ctx context.Context, o *op, p *plan) error {
	key := storageKey(p)
	slot, err := s.gate.Admit(ctx, key)
	if err != nil {
		return s.failBeforeFreeze(ctx, o.ref, events.StepQuiesce, fmt.Errorf("wait for a freeze slot on snapshot class %s: %w", storageLabel(key), err))
	}
	o.slot.Store(slot)
	waited := slot.Waited()
	s.metrics.admissionWait.Record(ctx, waited.Seconds(), metric.WithAttributes(attribute.String("snapshot_class", storageLabel(key))))
	if waited > 0 {
		s.log.InfoContext(ctx, "admitted to freeze after waiting for the storage", "backup_id", o.ref.BackupID, "workload", o.ref.Workload.String(),
			"snapshot_class", storageLabel(key), "waited", waited)
	}
	return nil
}

// observeCut gives the gate the cut duration of a freeze of this replica
// (a Snapshotted): what the storage took, the only measure of its load.
// A Snapshotted of another replica's freeze, or of a freeze taken over,
// tells this replica's gate nothing it admitted.
//
// The cut is the storage's part of the freeze: once it is done the slot is
// given back, so that the next freeze's pre-hook runs while this one's
// post-hook does (ops.remove gives back the slots of freezes that end
// without a cut).
func (s *Service) observeCut(p *events.Snapshotted) {
	if o := s.ops.get(p.BackupRef); o != nil {
		slot := o.slot.Load()
		if slot == nil {
			return
		}
		before := s.gate.Limit(slot.Key())
		slot.Observe(time.Duration(p.CutDuration))
		slot.Release()
		if after := s.gate.Limit(slot.Key()); after != before {
			s.log.Info("admission limit changed", "snapshot_class", storageLabel(slot.Key()), "limit", after, "was", before,
				"cut", time.Duration(p.CutDuration), "backup_id", p.BackupID)
		}
	}
}

func newAdmissionWaitHistogram(m metric.Meter) metric.Float64Histogram {
	h, err := m.Float64Histogram(MetricAdmissionWait, metric.WithUnit("s"),
		metric.WithDescription("how long a backup request waited, unfrozen, for room to freeze on its storage"),
		metric.WithExplicitBucketBoundaries(service.DurationBuckets()...))
	if err != nil {
		otel.Handle(err)
	}
	return h
}

// observeAdmission reports the gate's state, per storage, when metrics are
// collected.
func (s *Service) observeAdmission() (metric.Registration, error) {
	m := s.metrics.meter
	limit, err := m.Int64ObservableGauge(MetricAdmissionLimit, metric.WithUnit("{freeze}"),
		metric.WithDescription("freezes this replica lets be in flight at once on one snapshot class, learned from its cuts; 0: admission disabled"))
	if err != nil {
		return nil, err
	}
	inFlight, err := m.Int64ObservableGauge(MetricAdmissionInFlight, metric.WithUnit("{freeze}"),
		metric.WithDescription("freezes in flight (admitted, not ended) on one snapshot class in this replica"))
	if err != nil {
		return nil, err
	}
	waiting, err := m.Int64ObservableGauge(MetricAdmissionWaiting, metric.WithUnit("{request}"),
		metric.WithDescription("backup requests waiting, unfrozen, for room to freeze on one snapshot class in this replica"))
	if err != nil {
		return nil, err
	}
	baseline, err := m.Float64ObservableGauge(MetricAdmissionCutBaseline, metric.WithUnit("s"),
		metric.WithDescription("the shortest recent snapshot cut on one snapshot class, which each cut is compared with"))
	if err != nil {
		return nil, err
	}
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, st := range s.gate.Stats() {
			attrs := metric.WithAttributes(attribute.String("snapshot_class", storageLabel(st.Key)))
			o.ObserveInt64(limit, int64(st.Limit), attrs)
			o.ObserveInt64(inFlight, int64(st.InFlight), attrs)
			o.ObserveInt64(waiting, int64(st.Waiting), attrs)
			o.ObserveFloat64(baseline, st.Baseline.Seconds(), attrs)
		}
		return nil
	}, limit, inFlight, waiting, baseline)
}

// runAdmission reports the gate's metrics, and closes the gate when ctx
// ends: a replica shutting down freezes nothing more, and its waiting
// requests are redelivered to another replica. done unregisters the
// metrics.
func (s *Service) runAdmission(ctx context.Context) (done func(), err error) {
	reg, err := s.observeAdmission()
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, s.gate.Close)
	return func() {
		stop()
		_ = reg.Unregister()
	}, nil
}
