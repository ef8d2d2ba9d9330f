package notify

import (
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// Outcome is how a backup ended, in the terms a notification uses.
type Outcome struct {
	BackupID string
	Workload events.Workload
	// Succeeded is true when the backup as a whole succeeded.
	Succeeded bool
	// Step is the step that failed, when the terminal event names it (a
	// refused request, a failed resolve); a Resumed after a failure does
	// not, its Reason says why the application was resumed.
	Step   string
	Reason string
	// Frozen is true when the application was quiesced; FrozenFor is then
	// how long it did not accept writes.
	Frozen    bool
	FrozenFor time.Duration
	// ForcedUnlock is true when the watchdog or an operator ended the
	// freeze, not the pipeline.
	ForcedUnlock bool
	// At is when the backup ended.
	At time.Time
	// Restore is set when the outcome is a restore's (Restored or
	// RestoreFailed), not a backup's.
	Restore *RestoreOutcome
}

// RestoreOutcome is how a restore of the backup ended.
type RestoreOutcome struct {
	RestoreID       string
	TargetNamespace string
	Claims          []events.RestoredClaim
	// Consistent: the backup restored was consistent.
	Consistent bool
	Took       time.Duration
}

// OutcomeOf summarises a terminal event of a backup, or the end of a
// restore; false for any other event.
func OutcomeOf(ev events.Event) (Outcome, bool) {
	switch p := ev.Payload.(type) {
	case *events.Restored:
		return Outcome{BackupID: p.BackupID, Workload: p.Workload, Succeeded: true, At: ev.Time(),
			Restore: &RestoreOutcome{RestoreID: p.RestoreID, TargetNamespace: p.TargetNamespace, Claims: p.Claims, Consistent: p.Consistent, Took: p.Took.Std()}}, true
	case *events.RestoreFailed:
		return Outcome{BackupID: p.BackupID, Workload: p.Workload, Reason: p.Reason, At: ev.Time(),
			Restore: &RestoreOutcome{RestoreID: p.RestoreID, TargetNamespace: p.TargetNamespace, Claims: p.Claims}}, true
	}
	if !events.IsTerminal(ev) {
		return Outcome{}, false
	}
	o := Outcome{BackupID: ev.BackupID(), Workload: ev.Workload(), Succeeded: events.Succeeded(ev), At: ev.Time()}
	switch p := ev.Payload.(type) {
	case *events.Resumed:
		o.Reason = p.Reason
		o.Frozen = true
		o.FrozenFor = p.FrozenFor.Std()
		o.ForcedUnlock = p.Reason == events.ResumeStaleLock || p.Reason == events.ResumeOperator
		if !p.ResumedAt.IsZero() {
			o.At = p.ResumedAt
		}
	case *events.BackupFailed:
		o.Step = p.Step
		o.Reason = p.Reason
	}
	return o, true
}

// Result is "succeeded" or "failed".
func (o Outcome) Result() string {
	if o.Succeeded {
		return "succeeded"
	}
	return "failed"
}
