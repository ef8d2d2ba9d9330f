package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// A restore makes new PersistentVolumeClaims from a backup's snapshots. Its
// events are published on the backup's subjects (the backup's workload and
// id), so `freezeframe events --backup ID` shows a backup and its restores
// together, and carry a restore id of their own: a backup may be restored
// many times.

// RestoreVolume is one snapshot of a backup and the claim a restore makes
// from it.
type RestoreVolume struct {
	// PVC is the claim the snapshot was cut from.
	PVC string `json:"pvc"`
	// Snapshot is the VolumeSnapshot, in the backup's namespace (a group
	// snapshot's member, in group mode).
	Snapshot string `json:"snapshot"`
	// Claim is the claim to create, in the restore's target namespace
	// (RestoreClaimName).
	Claim string `json:"claim"`
	// RestoreSize is the size the storage reported for the snapshot.
	RestoreSize string `json:"restoreSize,omitempty"`
}

// RestoreRequested asks for a backup's snapshots to be made into claims.
type RestoreRequested struct {
	BackupRef
	// RestoreID names this restore (NewRestoreID); it is part of every
	// event id of the restore.
	RestoreID   string `json:"restoreId"`
	RequestedBy string `json:"requestedBy,omitempty"`
	// TargetNamespace is where the claims are made: the backup's namespace
	// when empty.
	TargetNamespace string `json:"targetNamespace,omitempty"`
	// NameSuffix is appended to each claim's name (see RestoreClaimName).
	NameSuffix string `json:"nameSuffix,omitempty"`
	// AllowInconsistent restores a backup whose freeze did not end well.
	AllowInconsistent bool `json:"allowInconsistent,omitempty"`
	// InPlace replaces the workload's own claims: the workload is scaled
	// down, its claims' volumes set to Retain, the claims deleted and made
	// again under the same names from the snapshots, and the workload scaled
	// back up. Each volume's Claim must then be its PVC, in the backup's
	// namespace.
	InPlace bool `json:"inPlace,omitempty"`
	// Mode and Group are the backup's (SnapshotModeGroup: the volumes are
	// the members of one group snapshot, restored together).
	Mode    string          `json:"mode,omitempty"`
	Group   string          `json:"group,omitempty"`
	Volumes []RestoreVolume `json:"volumes"`
}

// EventType implements Payload.
func (RestoreRequested) EventType() string { return TypeRestoreRequested }

// Target is the namespace the claims are made in.
func (p RestoreRequested) Target() string {
	if p.TargetNamespace == "" {
		return p.Workload.Namespace
	}
	return p.TargetNamespace
}

// Validate implements Payload.
func (p RestoreRequested) Validate() error {
	errs := []error{p.validate(), validateRestoreID(p.RestoreID)}
	if p.TargetNamespace != "" && !isDNSLabel(p.TargetNamespace) {
		errs = append(errs, fmt.Errorf("targetNamespace %q: not a namespace name", short(p.TargetNamespace)))
	}
	if len(p.Volumes) == 0 {
		errs = append(errs, errors.New("volumes: at least one required"))
	}
	claims := map[string]bool{}
	for i, v := range p.Volumes {
		if !isDNSSubdomain(v.PVC) || !isDNSSubdomain(v.Snapshot) || !isDNSSubdomain(v.Claim) {
			errs = append(errs, fmt.Errorf("volumes[%d]: pvc, snapshot and claim must be object names", i))
		}
		if claims[v.Claim] {
			errs = append(errs, fmt.Errorf("volumes[%d]: claim %q twice", i, v.Claim))
		}
		claims[v.Claim] = true
	}
	if p.InPlace {
		if p.Target() != p.Workload.Namespace {
			errs = append(errs, fmt.Errorf("targetNamespace %q: an in-place restore is into the workload's namespace %s", short(p.TargetNamespace), p.Workload.Namespace))
		}
		if p.Workload.Kind != KindDeployment && p.Workload.Kind != KindStatefulSet {
			errs = append(errs, fmt.Errorf("workload kind %q: an in-place restore scales a %s or a %s", short(p.Workload.Kind), KindDeployment, KindStatefulSet))
		}
		for i, vol := range p.Volumes {
			if vol.Claim != vol.PVC {
				errs = append(errs, fmt.Errorf("volumes[%d]: claim %s: an in-place restore remakes claim %s itself", i, vol.Claim, vol.PVC))
			}
		}
	} else if v := p.Target(); v == p.Workload.Namespace {
		for i, vol := range p.Volumes {
			if vol.Claim == vol.PVC {
				errs = append(errs, fmt.Errorf("volumes[%d]: claim %s would be the backed-up claim itself: restore into another namespace or with a name suffix", i, vol.Claim))
			}
		}
	}
	return errors.Join(errs...)
}

// RestoredClaim is one claim a restore made.
type RestoredClaim struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// PVC is the claim the snapshot was cut from.
	PVC string `json:"pvc"`
	// Snapshot is the VolumeSnapshot the claim's dataSource names, in the
	// claim's namespace (a copy of the backup's when restored into another
	// namespace).
	Snapshot string `json:"snapshot"`
	// Volume is the PersistentVolume bound to the claim, and Capacity its
	// size; empty while not bound.
	Volume   string    `json:"volume,omitempty"`
	Capacity string    `json:"capacity,omitempty"`
	BoundAt  time.Time `json:"boundAt,omitzero"`
	// WaitsForConsumer: the claim's StorageClass binds it only once a pod
	// uses it (WaitForFirstConsumer).
	WaitsForConsumer bool `json:"waitsForConsumer,omitempty"`
}

// Steps of an in-place restore, in order (RestoreStep.Step).
const (
	// RestoreStepRetain: each claim's volume set to reclaim policy Retain,
	// so that deleting the claim keeps the old data.
	RestoreStepRetain = "retain-volumes"
	// RestoreStepScaleDown: the workload scaled to 0 and its pods gone.
	RestoreStepScaleDown = "scale-down"
	// RestoreStepDeleteClaims: the old claims deleted (their volumes kept,
	// Released).
	RestoreStepDeleteClaims = "delete-claims"
	// RestoreStepCreateClaims: the claims made again from the snapshots,
	// under the same names, and bound.
	RestoreStepCreateClaims = "create-claims"
	// RestoreStepScaleUp: the workload scaled back to its replicas.
	RestoreStepScaleUp = "scale-up"
)

// RestoreStep is one step of an in-place restore, done.
type RestoreStep struct {
	Step   string    `json:"step"`
	Detail string    `json:"detail,omitempty"`
	At     time.Time `json:"at"`
}

// RestoreProgress says a step of an in-place restore is done, as it
// happens; Restored and RestoreFailed list them all again.
type RestoreProgress struct {
	BackupRef
	RestoreID string `json:"restoreId"`
	RestoreStep
}

// EventType implements Payload.
func (RestoreProgress) EventType() string { return TypeRestoreStep }

// Validate implements Payload.
func (p RestoreProgress) Validate() error {
	errs := []error{p.validate(), validateRestoreID(p.RestoreID)}
	if !isBackupID(p.Step) {
		errs = append(errs, fmt.Errorf("step %q: want 1-128 letters, digits, '-' or '_'", short(p.Step)))
	}
	return errors.Join(errs...)
}

// Restored says every claim of a restore exists and is bound (or waits for
// its first consumer, where its StorageClass says so).
type Restored struct {
	BackupRef
	RestoreID       string          `json:"restoreId"`
	TargetNamespace string          `json:"targetNamespace"`
	Claims          []RestoredClaim `json:"claims"`
	// Consistent: the backup's freeze ended well (restored without
	// --allow-inconsistent, or it was consistent anyway).
	Consistent bool `json:"consistent"`
	// Took is from the first claim created to the last one bound.
	Took Duration `json:"took"`
	// InPlace: the workload's own claims were replaced (Steps says how);
	// KeptVolumes are the old claims' volumes, kept (Retain, Released) until
	// deleted by hand.
	InPlace     bool          `json:"inPlace,omitempty"`
	Steps       []RestoreStep `json:"steps,omitempty"`
	KeptVolumes []string      `json:"keptVolumes,omitempty"`
}

// EventType implements Payload.
func (Restored) EventType() string { return TypeRestored }

// Validate implements Payload.
func (p Restored) Validate() error {
	errs := []error{p.validate(), validateRestoreID(p.RestoreID)}
	if len(p.Claims) == 0 {
		errs = append(errs, errors.New("claims: at least one required"))
	}
	return errors.Join(errs...)
}

// RestoreFailed says a restore did not finish; Claims are those it made,
// left in place (a retry with the same names finds them).
type RestoreFailed struct {
	BackupRef
	RestoreID       string          `json:"restoreId"`
	TargetNamespace string          `json:"targetNamespace,omitempty"`
	Reason          string          `json:"reason"`
	Claims          []RestoredClaim `json:"claims,omitempty"`
	// InPlace, Steps and KeptVolumes as in Restored: the steps done before
	// the failure, and the old volumes to roll back to.
	InPlace     bool          `json:"inPlace,omitempty"`
	Steps       []RestoreStep `json:"steps,omitempty"`
	KeptVolumes []string      `json:"keptVolumes,omitempty"`
}

// EventType implements Payload.
func (RestoreFailed) EventType() string { return TypeRestoreFailed }

// Validate implements Payload.
func (p RestoreFailed) Validate() error {
	errs := []error{p.validate(), validateRestoreID(p.RestoreID)}
	if p.Reason == "" {
		errs = append(errs, errors.New("reason: required"))
	}
	return errors.Join(errs...)
}

func validateRestoreID(id string) error {
	if !isBackupID(id) {
		return fmt.Errorf("restore id %q: want 1-128 letters, digits, '-' or '_'", short(id))
	}
	return nil
}

// restoreIDOf is the restore id of a restore event's payload, or "".
func restoreIDOf(p Payload) string {
	switch r := p.(type) {
	case *RestoreRequested:
		return r.RestoreID
	case RestoreRequested:
		return r.RestoreID
	case *Restored:
		return r.RestoreID
	case Restored:
		return r.RestoreID
	case *RestoreFailed:
		return r.RestoreID
	case RestoreFailed:
		return r.RestoreID
	case *RestoreProgress:
		return r.RestoreID
	case RestoreProgress:
		return r.RestoreID
	}
	return ""
}

// RestoreIDOf is the restore id of a restore event, or "" for a backup
// event.
func RestoreIDOf(e Event) string {
	if e.Payload == nil {
		return ""
	}
	return restoreIDOf(e.Payload)
}

// NewRestoreID returns a fresh restore id; ids sort by creation time.
func NewRestoreID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return "rs-" + uuid.NewString()
	}
	return "rs-" + id.String()
}

// RestoreClaimName is the claim a restore makes from a snapshot of claim
// pvc: pvc followed by suffix, cut to Kubernetes' 253 characters. It is
// deterministic, so a redelivered request finds the claims it made.
func RestoreClaimName(pvc, suffix string) string {
	name := pvc + suffix
	if len(name) > 253 {
		name = name[:253]
	}
	for len(name) > 0 && (name[len(name)-1] == '-' || name[len(name)-1] == '.') {
		name = name[:len(name)-1]
	}
	return name
}

// RequestRestore puts a RestoreRequested onto the stream, where the
// snapshotter picks it up; a missing RestoreID is filled in. Publishing the
// same RestoreID again is dropped by the stream. Follow it with
// WaitRestore.
func (c *Client) RequestRestore(ctx context.Context, req RestoreRequested) (Event, error) {
	if req.RestoreID == "" {
		req.RestoreID = NewRestoreID()
	}
	if req.RequestedBy == "" {
		req.RequestedBy = "api"
	}
	ev, _, err := c.pub.Publish(ctx, &req)
	if err != nil {
		return Event{}, fmt.Errorf("request restore: %w", err)
	}
	return ev, nil
}

// WaitRestore follows restore restoreID of backup backupID until it ends,
// and returns its Restored or RestoreFailed event; onEvent, when not nil,
// sees each of the restore's events in order, that one included.
func (c *Client) WaitRestore(ctx context.Context, backupID, restoreID string, onEvent func(Event)) (Event, error) {
	f := Filter{BackupID: backupID, Kinds: []Kind{KindRestoreRequested, KindRestoreStep, KindRestored, KindRestoreFailed}}
	for ev, err := range c.Subscribe(ctx, f, SubscribeOptions{FromStart: true}) {
		if err != nil {
			if ctx.Err() != nil {
				return Event{}, fmt.Errorf("wait for restore %s: %w", restoreID, ctx.Err())
			}
			continue
		}
		if RestoreIDOf(ev) != restoreID {
			continue
		}
		if onEvent != nil {
			onEvent(ev)
		}
		if k := ev.Kind(); k == KindRestored || k == KindRestoreFailed {
			return ev, nil
		}
	}
	return Event{}, fmt.Errorf("wait for restore %s: %w", restoreID, ctx.Err())
}
