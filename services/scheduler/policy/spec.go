package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/freezeframe/freezeframe/pkg/workload"
)

// GVR is the BackupPolicy resource (defined in pkg/workload, which the
// hooker shares).
var GVR = workload.BackupPolicyResource

// Policy is a BackupPolicy as the scheduler reads it.
type Policy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              Spec   `json:"spec"`
	Status            Status `json:"status,omitempty"`
}

// Spec is what a policy asks for.
type Spec struct {
	// Schedule is a five-field cron expression or a shorthand (@hourly,
	// @daily, @weekly, @monthly, @yearly, @every 6h).
	Schedule string `json:"schedule"`
	// TimeZone is an IANA name (Europe/Paris); UTC when empty.
	TimeZone  string    `json:"timeZone,omitempty"`
	Selection Selection `json:"selection,omitempty"`
	// Blueprint overrides the blueprint bound to each workload.
	Blueprint string `json:"blueprint,omitempty"`
	// MaxFreeze caps how long each application may stay frozen.
	MaxFreeze       *metav1.Duration  `json:"maxFreeze,omitempty"`
	SnapshotsToKeep int               `json:"snapshotsToKeep,omitempty"`
	SnapshotClass   string            `json:"snapshotClass,omitempty"`
	Options         map[string]string `json:"options,omitempty"`
	Paused          bool              `json:"paused,omitempty"`
}

// Selection picks the workloads a policy backs up. The hooker reads it too
// (to trust a scheduled request's retention), so it lives in pkg/workload.
type Selection = workload.PolicySelection

// Status is what the scheduler reports.
type Status struct {
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`
	LastRun          *Run         `json:"lastRun,omitempty"`
	LastResult       *Result      `json:"lastResult,omitempty"`
	// MissedTicks is how many ticks were skipped after the last downtime.
	MissedTicks        int    `json:"missedTicks,omitempty"`
	ObservedGeneration int64  `json:"observedGeneration,omitempty"`
	Message            string `json:"message,omitempty"`
}

// Run is one tick's requests.
type Run struct {
	Tick    metav1.Time `json:"tick"`
	Backups []RunBackup `json:"backups,omitempty"`
}

// RunBackup is one backup requested at a tick.
type RunBackup struct {
	BackupID string `json:"backupId"`
	Workload string `json:"workload"` // namespace/kind/name
}

// Result summarises how the backups of the last run ended, from the events.
type Result struct {
	Phase     string `json:"phase"` // Running, Succeeded, Failed, PartiallyFailed
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
	Running   int    `json:"running"`
}

// FromUnstructured reads a policy.
func FromUnstructured(u *unstructured.Unstructured) (*Policy, error) {
	var p Policy
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
		return nil, fmt.Errorf("read BackupPolicy %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return &p, nil
}

// parser accepts five fields and the @ shorthands.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule is a policy's parsed schedule in its time zone.
type Schedule struct {
	cron cron.Schedule
	loc  *time.Location
}

// ParseSchedule reads a cron expression or shorthand in a time zone.
func ParseSchedule(expr, tz string) (Schedule, error) {
	if strings.Contains(expr, "TZ=") {
		return Schedule{}, fmt.Errorf("schedule %q: set the time zone in spec.timeZone", expr)
	}
	loc := time.UTC
	if tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil {
			return Schedule{}, fmt.Errorf("time zone %q: %w", tz, err)
		}
		loc = l
	}
	s, err := parser.Parse(expr)
	if err != nil {
		return Schedule{}, fmt.Errorf("schedule %q: %w", expr, err)
	}
	return Schedule{cron: s, loc: loc}, nil
}

// Next is the first tick strictly after t.
func (s Schedule) Next(t time.Time) time.Time { return s.cron.Next(t.In(s.loc)).UTC() }
