package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Type names, reverse-DNS and versioned: a breaking change to a payload is a
// new version, published side by side with the old until consumers moved.
const (
	TypeBackupRequested  = "io.freezeframe.backup.requested.v1"
	TypeQuiesced         = "io.freezeframe.backup.quiesced.v1"
	TypeSnapshotted      = "io.freezeframe.backup.snapshotted.v1"
	TypeResumed          = "io.freezeframe.backup.resumed.v1"
	TypeBackupFailed     = "io.freezeframe.backup.failed.v1"
	TypeUnlockRequested  = "io.freezeframe.backup.unlock-requested.v1"
	TypeSnapshotReady    = "io.freezeframe.backup.snapshot-ready.v1"
	TypeRestoreRequested = "io.freezeframe.backup.restore-requested.v1"
	TypeRestored         = "io.freezeframe.backup.restored.v1"
	TypeRestoreFailed    = "io.freezeframe.backup.restore-failed.v1"
	TypeRestoreStep      = "io.freezeframe.backup.restore-step.v1"
)

// Kind is the short name of an event type, as it appears in subjects.
type Kind string

// Event kinds, one per type.
const (
	KindRequested       Kind = "requested"
	KindQuiesced        Kind = "quiesced"
	KindSnapshotted     Kind = "snapshotted"
	KindResumed         Kind = "resumed"
	KindFailed          Kind = "failed"
	KindUnlockRequested Kind = "unlock-requested"
	KindSnapshotReady   Kind = "snapshot-ready"
	// A restore of a backup: asked for, done (every claim bound), failed.
	KindRestoreRequested Kind = "restore-requested"
	KindRestored         Kind = "restored"
	KindRestoreFailed    Kind = "restore-failed"
	// A step of an in-place restore, done (RestoreProgress).
	KindRestoreStep Kind = "restore-step"
)

var kindByType = map[string]Kind{
	TypeBackupRequested:  KindRequested,
	TypeQuiesced:         KindQuiesced,
	TypeSnapshotted:      KindSnapshotted,
	TypeResumed:          KindResumed,
	TypeBackupFailed:     KindFailed,
	TypeUnlockRequested:  KindUnlockRequested,
	TypeSnapshotReady:    KindSnapshotReady,
	TypeRestoreRequested: KindRestoreRequested,
	TypeRestored:         KindRestored,
	TypeRestoreFailed:    KindRestoreFailed,
	TypeRestoreStep:      KindRestoreStep,
}

// Kinds lists every event kind in pipeline order.
func Kinds() []Kind {
	return []Kind{KindRequested, KindQuiesced, KindSnapshotted, KindResumed, KindSnapshotReady, KindFailed, KindUnlockRequested,
		KindRestoreRequested, KindRestoreStep, KindRestored, KindRestoreFailed}
}

// KindOf returns the kind of a CloudEvents type, or false for a type this
// version of the contract does not know.
func KindOf(eventType string) (Kind, bool) {
	k, ok := kindByType[eventType]
	return k, ok
}

// Payload is implemented by every event's data.
type Payload interface {
	// EventType is the CloudEvents type of the payload.
	EventType() string
	// Ref names the backup and workload the event belongs to.
	Ref() BackupRef
	// Validate reports what is wrong with the payload, if anything.
	Validate() error
}

// BackupRef is embedded in every payload: which backup, of which workload.
type BackupRef struct {
	BackupID string   `json:"backupId"`
	Workload Workload `json:"workload"`
}

// Ref returns the reference itself, so every payload satisfies Payload.Ref.
func (r BackupRef) Ref() BackupRef { return r }

// ValidateBackupID reports whether id can be a backup id: it becomes a subject
// token and part of message ids, so it is restricted to letters, digits, '-'
// and '_'.
func ValidateBackupID(id string) error {
	if !isBackupID(id) {
		return fmt.Errorf("backup id %q: want 1-128 letters, digits, '-' or '_'", id)
	}
	return nil
}

func (r BackupRef) validate() error {
	return errors.Join(ValidateBackupID(r.BackupID), r.Workload.Validate())
}

// Duration is a time.Duration that reads and writes as a Go duration string
// ("1.5s") in JSON, so payloads stay readable in `nats sub` and logs.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string, or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("duration: want a string such as \"90s\": %w", err)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// Std returns the standard library duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// BackupRequested asks for one application-consistent backup of a workload.
type BackupRequested struct {
	BackupRef
	// RequestedBy says who asked: "cli", "api", "policy/<namespace>/<name>".
	RequestedBy string `json:"requestedBy,omitempty"`
	// Blueprint overrides the blueprint bound to the workload by annotation.
	Blueprint string `json:"blueprint,omitempty"`
	// MaxFreeze caps how long the application may stay frozen; zero means the
	// hooker's default.
	MaxFreeze Duration `json:"maxFreeze,omitempty"`
	// SnapshotClass overrides the VolumeSnapshotClass.
	SnapshotClass string `json:"snapshotClass,omitempty"`
	// SnapshotsToKeep is how many complete backups of the workload to keep
	// once this one is ready; older ones are deleted. Retention deletes
	// backups, so the hooker honours it only from the scheduler
	// (RoleScheduler's source) for RequestedBy "policy/<ns>/<name>" when that
	// BackupPolicy exists, selects the workload and says the same number;
	// otherwise it is ignored and the Quiesced says why (RetentionIgnored).
	// Zero, or ignored: the workload's freezeframe.io/snapshots-to-keep
	// annotation, else the snapshotter's default (keep all).
	SnapshotsToKeep int `json:"snapshotsToKeep,omitempty"`
	// Options are passed to blueprint templates as .Options.
	Options map[string]string `json:"options,omitempty"`
}

// EventType implements Payload.
func (BackupRequested) EventType() string { return TypeBackupRequested }

// Validate implements Payload.
func (p BackupRequested) Validate() error {
	var errs []error
	errs = append(errs, p.validate())
	if p.MaxFreeze < 0 {
		errs = append(errs, errors.New("maxFreeze: must not be negative"))
	}
	if p.SnapshotsToKeep < 0 {
		errs = append(errs, errors.New("snapshotsToKeep: must not be negative"))
	}
	errs = append(errs, ValidateOptions(p.Options))
	return errors.Join(errs...)
}

// secretWords are the parts of an option name that say its value is a
// credential.
var secretWords = []string{"password", "passwd", "passphrase", "pwd", "secret", "token", "apikey", "credential", "privatekey", "seed"}

// SecretLookingOption reports whether an option's name says it holds a
// credential ("dbPassword", "api_key", "SLACK_TOKEN"), case, "_" and "-"
// ignored.
func SecretLookingOption(name string) bool {
	n := strings.NewReplacer("_", "", "-", "", ".", "").Replace(strings.ToLower(name))
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// ValidateOptions refuses options whose names look like credentials. A
// request is stored in the event stream as it was sent, readable by every
// requester and kept for the stream's whole retention: a password there is
// a password leaked. Blueprints read credentials from Kubernetes Secrets
// they name under "objects", which the hooker fetches at backup time and
// never writes to the stream.
func ValidateOptions(opts map[string]string) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(opts)) {
		if SecretLookingOption(name) {
			errs = append(errs, fmt.Errorf("options.%s: looks like a credential, and options are stored in the event stream in clear: "+
				"put it in a Kubernetes Secret and have the blueprint read it through objects (.Phases.<phase>.Secrets)", name))
		}
	}
	return errors.Join(errs...)
}

// HookRun records one exec of a hook phase.
type HookRun struct {
	Phase     string   `json:"phase"`
	Pod       string   `json:"pod"`
	Container string   `json:"container"`
	Duration  Duration `json:"duration"`
}

// Quiesced says the pre-hook succeeded: the application is frozen from
// QuiescedAt until the matching Resumed.
type Quiesced struct {
	BackupRef
	QuiescedAt time.Time `json:"quiescedAt"`
	// FreezeDeadline is when the watchdog forces a resume at the latest.
	FreezeDeadline time.Time `json:"freezeDeadline"`
	// Holder is the hooker replica that froze the application; a session-held
	// lock can only be released by it.
	Holder    string    `json:"holder,omitempty"`
	Blueprint string    `json:"blueprint"`
	Hooks     []HookRun `json:"hooks,omitempty"`
	// SnapshotClass is the VolumeSnapshotClass asked for by the request or
	// the workload's annotation; empty: the default class of each volume's
	// CSI driver.
	SnapshotClass string `json:"snapshotClass,omitempty"`
	// SnapshotsToKeep is the retention asked for by the request's
	// BackupPolicy or the workload's annotation; zero: the snapshotter's
	// default.
	SnapshotsToKeep int `json:"snapshotsToKeep,omitempty"`
	// RetentionIgnored says why the request's snapshotsToKeep was not
	// applied: only a request the scheduler sent for a BackupPolicy that
	// selects the workload and says the same number may set retention.
	RetentionIgnored string `json:"retentionIgnored,omitempty"`
	// Volumes are the PVCs the workload's pods mount, as the hooker saw them
	// before freezing; the snapshotter uses them instead of asking the API
	// again while the application is frozen.
	Volumes []string `json:"volumes,omitempty"`
	// FreezeEpoch is the fencing token of this freeze (Freeze.Epoch): the
	// snapshotter cuts only while the freeze record says frozen at this
	// epoch, and checks it again after the cut.
	FreezeEpoch uint64 `json:"freezeEpoch,omitempty"`
	// AdmissionWait is how long the request waited, nothing frozen, for
	// room to freeze on its storage (the hooker's freeze admission); 0
	// when it was admitted at once.
	AdmissionWait Duration `json:"admissionWait,omitempty"`
	// PostHookArmed says that part of the post-hook waits in the pods on an
	// exec opened by the holder before the freeze, and runs by itself if
	// that exec's stream ends (the holder died): a replica that takes the
	// freeze over cannot know whether it ran mid-cut, so it fails the
	// backup, and runs the post-hook again.
	PostHookArmed bool `json:"postHookArmed,omitempty"`
}

// EventType implements Payload.
func (Quiesced) EventType() string { return TypeQuiesced }

// Validate implements Payload.
func (p Quiesced) Validate() error {
	var errs []error
	errs = append(errs, p.validate())
	if p.QuiescedAt.IsZero() {
		errs = append(errs, errors.New("quiescedAt: required"))
	}
	return errors.Join(errs...)
}

// Snapshot names one VolumeSnapshot cut for a backup.
type Snapshot struct {
	// Name is the VolumeSnapshot. In group mode it may be empty in
	// Snapshotted (the snapshot controller names the members after the cut)
	// and is always set in SnapshotReady.
	Name      string    `json:"name,omitempty"`
	Namespace string    `json:"namespace"`
	PVC       string    `json:"pvc"`
	Class     string    `json:"class,omitempty"`
	CutAt     time.Time `json:"cutAt"`
	// ReadyAt is when the snapshotter saw readyToUse (SnapshotReady only).
	ReadyAt time.Time `json:"readyAt,omitzero"`
	// RestoreSize is the size a restore needs, as the driver reported it
	// (SnapshotReady only).
	RestoreSize string `json:"restoreSize,omitempty"`
}

// Snapshot modes: one snapshot per volume, or one group snapshot cut at one instant.
const (
	SnapshotModeVolume = "volume"
	SnapshotModeGroup  = "group"
)

// Snapshotted says every volume of the workload is cut; the application may
// be resumed. Readiness (upload) may still be in progress: SnapshotReady
// follows.
type Snapshotted struct {
	BackupRef
	Snapshots []Snapshot `json:"snapshots"`
	// Mode is SnapshotModeVolume (one VolumeSnapshot per claim) or
	// SnapshotModeGroup (one VolumeGroupSnapshot, every claim cut at the
	// same instant).
	Mode string `json:"mode"`
	// Group is the VolumeGroupSnapshot in group mode.
	Group string `json:"group,omitempty"`
	// GroupClass is the VolumeGroupSnapshotClass in group mode.
	GroupClass string `json:"groupClass,omitempty"`
	// CutDuration is from the first create call to the last cut: the
	// storage's own share of the freeze.
	CutDuration Duration `json:"cutDuration"`
	// SnapshotsToKeep is the retention applied once the backup is ready;
	// zero keeps every backup.
	SnapshotsToKeep int `json:"snapshotsToKeep,omitempty"`
}

// EventType implements Payload.
func (Snapshotted) EventType() string { return TypeSnapshotted }

// Validate implements Payload.
func (p Snapshotted) Validate() error {
	var errs []error
	errs = append(errs, p.validate())
	errs = append(errs, validateSnapshots(p.Snapshots, p.Mode, p.Group, false))
	return errors.Join(errs...)
}

func validateSnapshots(snaps []Snapshot, mode, group string, namesRequired bool) error {
	var errs []error
	switch mode {
	case SnapshotModeVolume:
		namesRequired = true
	case SnapshotModeGroup:
		if group == "" {
			errs = append(errs, errors.New("group: required in group mode"))
		}
	default:
		errs = append(errs, fmt.Errorf("mode %q: want %s or %s", mode, SnapshotModeVolume, SnapshotModeGroup))
	}
	if len(snaps) == 0 {
		errs = append(errs, errors.New("snapshots: at least one required"))
	}
	for i, s := range snaps {
		if s.PVC == "" || (namesRequired && s.Name == "") {
			errs = append(errs, fmt.Errorf("snapshots[%d]: name and pvc required", i))
		}
	}
	return errors.Join(errs...)
}

// SnapshotReady says every snapshot of a backup is ready to use (uploaded,
// restorable): the backup is complete. It usually follows Resumed, since the
// application is resumed at the cut; with fast storage it may come first.
type SnapshotReady struct {
	BackupRef
	Snapshots []Snapshot `json:"snapshots"`
	Mode      string     `json:"mode"`
	Group     string     `json:"group,omitempty"`
	// ReadyAfter is from the last cut to the last snapshot ready: how long
	// the storage took to make the backup restorable, with nothing frozen.
	ReadyAfter Duration `json:"readyAfter"`
	// SnapshotsToKeep is the retention applied (zero: keep every backup),
	// and Pruned the older backups whose snapshots it deleted.
	SnapshotsToKeep int      `json:"snapshotsToKeep,omitempty"`
	Pruned          []string `json:"pruned,omitempty"`
}

// EventType implements Payload.
func (SnapshotReady) EventType() string { return TypeSnapshotReady }

// Validate implements Payload.
func (p SnapshotReady) Validate() error {
	var errs []error
	errs = append(errs, p.validate())
	errs = append(errs, validateSnapshots(p.Snapshots, p.Mode, p.Group, true))
	return errors.Join(errs...)
}

// Why an application was resumed.
const (
	ResumeAfterSnapshot      = "snapshotted"
	ResumeAfterFailure       = "failed"
	ResumeAfterPrehookFailed = "prehook-failed"
	ResumeStaleLock          = "stale-lock"
	ResumeOperator           = "operator"
)

// Resumed says the post-hook ran: the application accepts writes again. It is
// the last event of a backup that froze anything.
type Resumed struct {
	BackupRef
	ResumedAt time.Time `json:"resumedAt"`
	// Reason is why the resume happened (ResumeAfterSnapshot, ...).
	Reason string `json:"reason"`
	// Succeeded is true when the backup as a whole succeeded.
	Succeeded bool `json:"succeeded"`
	// FrozenFor is from the end of the pre-hook to the start of the post-hook.
	FrozenFor Duration  `json:"frozenFor"`
	Hooks     []HookRun `json:"hooks,omitempty"`
}

// EventType implements Payload.
func (Resumed) EventType() string { return TypeResumed }

// Validate implements Payload.
func (p Resumed) Validate() error {
	var errs []error
	errs = append(errs, p.validate())
	if p.Reason == "" {
		errs = append(errs, errors.New("reason: required"))
	}
	return errors.Join(errs...)
}

// Steps of a backup, as named in BackupFailed.
const (
	StepRequest  = "request"
	StepResolve  = "resolve"
	StepQuiesce  = "quiesce"
	StepSnapshot = "snapshot"
	// StepFreeze is a freeze ended by an unlock (watchdog, cap, operator)
	// before the snapshot was cut.
	StepFreeze = "freeze"
	StepResume = "resume"
	// StepReady is a snapshot that failed or timed out after the cut, while
	// the storage made it ready; the application was resumed already.
	StepReady = "ready"
)

// BackupFailed says a step failed and why.
type BackupFailed struct {
	BackupRef
	Step   string `json:"step"`
	Reason string `json:"reason"`
	// ResumePending is true when the application was frozen and a Resumed
	// will follow; false when this is the backup's last event.
	ResumePending bool `json:"resumePending"`
}

// EventType implements Payload.
func (BackupFailed) EventType() string { return TypeBackupFailed }

// Validate implements Payload.
func (p BackupFailed) Validate() error {
	var errs []error
	errs = append(errs, p.validate())
	if p.Step == "" || p.Reason == "" {
		errs = append(errs, errors.New("step and reason: required"))
	}
	return errors.Join(errs...)
}

// UnlockRequested asks the hooker to run the post-hook now: a lease went
// stale, or an operator forced it.
type UnlockRequested struct {
	BackupRef
	Reason      string `json:"reason"`
	RequestedBy string `json:"requestedBy,omitempty"`
	// Holder is the replica that holds the freeze, if known.
	Holder string `json:"holder,omitempty"`
	// HolderGone says the holder stopped renewing its lease (it died or lost
	// NATS): any replica may take the resume over.
	HolderGone bool `json:"holderGone,omitempty"`
	// FreezeRevision is the revision of the freeze record the unlock acts
	// on. It is part of the event id, so that an unlock of a freeze that
	// changed since (a failed post-hook, a takeover) is a new event and
	// never dropped as a duplicate of an earlier one.
	FreezeRevision uint64 `json:"freezeRevision,omitempty"`
}

// EventType implements Payload.
func (UnlockRequested) EventType() string { return TypeUnlockRequested }

// Validate implements Payload.
func (p UnlockRequested) Validate() error {
	var errs []error
	errs = append(errs, p.validate())
	if p.Reason == "" {
		errs = append(errs, errors.New("reason: required"))
	}
	return errors.Join(errs...)
}

// newPayload returns an empty payload for a known type.
func newPayload(eventType string) (Payload, bool) {
	switch eventType {
	case TypeBackupRequested:
		return &BackupRequested{}, true
	case TypeQuiesced:
		return &Quiesced{}, true
	case TypeSnapshotted:
		return &Snapshotted{}, true
	case TypeResumed:
		return &Resumed{}, true
	case TypeBackupFailed:
		return &BackupFailed{}, true
	case TypeUnlockRequested:
		return &UnlockRequested{}, true
	case TypeSnapshotReady:
		return &SnapshotReady{}, true
	case TypeRestoreRequested:
		return &RestoreRequested{}, true
	case TypeRestored:
		return &Restored{}, true
	case TypeRestoreFailed:
		return &RestoreFailed{}, true
	case TypeRestoreStep:
		return &RestoreProgress{}, true
	}
	return nil, false
}
