package events

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	json "github.com/segmentio/encoding/json" // why: see codec.go
)

// CloudEvents extension attributes carried by every freezeframe event.
const (
	ExtBackupID = "backupid"
	ExtCluster  = "cluster"
)

// Event is one decoded backup event: the CloudEvent and its typed payload.
type Event struct {
	CloudEvent event.Event
	Payload    Payload
}

// Kind is the event's short kind (quiesced, resumed, ...).
func (e Event) Kind() Kind { k, _ := KindOf(e.CloudEvent.Type()); return k }

// BackupID is the id of the backup the event belongs to.
func (e Event) BackupID() string { return e.Payload.Ref().BackupID }

// Workload is the workload the event belongs to.
func (e Event) Workload() Workload { return e.Payload.Ref().Workload }

// Time is when the event was emitted.
func (e Event) Time() time.Time { return e.CloudEvent.Time() }

// EventOption adjusts an event built by NewEvent.
type EventOption func(*event.Event)

// WithID replaces the default event id. Ids must stay deterministic for
// anything a handler may publish twice, or the stream cannot drop the copy.
func WithID(id string) EventOption { return func(e *event.Event) { e.SetID(id) } }

// WithTime sets the event time (default: now).
func WithTime(t time.Time) EventOption { return func(e *event.Event) { e.SetTime(t) } }

// NewEvent wraps a payload in a CloudEvent from source (e.g. "/freezeframe/hooker").
// The id defaults to DefaultID(p), so that a handler that is retried
// republishes the same id and the stream drops the duplicate.
func NewEvent(source string, p Payload, opts ...EventOption) (Event, error) {
	if err := p.Validate(); err != nil {
		return Event{}, fmt.Errorf("validate %s: %w", p.EventType(), err)
	}
	src, err := sourceURI(source)
	if err != nil {
		return Event{}, fmt.Errorf("%s source %q: %w", p.EventType(), source, err)
	}
	data, err := json.Marshal(p)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s payload: %w", p.EventType(), err)
	}
	ref := p.Ref()
	// The context is built whole rather than through the setters: every
	// value is known valid here, and the setters' checks and maps are
	// paid on every hop.
	subject := ref.Workload.Namespace + "/" + strings.ToLower(ref.Workload.Kind) + "/" + ref.Workload.Name
	contentType := event.ApplicationJSON
	ce := event.Event{
		Context: &event.EventContextV1{
			ID:              DefaultID(p),
			Source:          src,
			Type:            p.EventType(),
			Subject:         &subject,
			Time:            &types.Timestamp{Time: time.Now().UTC()},
			DataContentType: &contentType,
			Extensions:      map[string]any{ExtBackupID: ref.BackupID, ExtCluster: ref.Workload.Cluster},
		},
		DataEncoded: data,
	}
	for _, o := range opts {
		o(&ce)
	}
	return Event{CloudEvent: ce, Payload: p}, nil
}

// DefaultID is the deterministic id of the event a payload makes: the
// workload, the backup id and the kind, and for failures the step and for
// unlocks the freeze revision they act on, and for restores the restore
// id (and the step, for a RestoreProgress), so each happens once per backup
// (and one backup id used for two workloads makes two backups).
func DefaultID(p Payload) string {
	k, _ := KindOf(p.EventType())
	ref := p.Ref()
	id := ref.Workload.Key() + "." + ref.BackupID + "." + string(k)
	switch f := p.(type) {
	case *BackupFailed:
		id += "." + f.Step
	case BackupFailed:
		id += "." + f.Step
	case *UnlockRequested:
		id += ".r" + strconv.FormatUint(f.FreezeRevision, 10)
	case UnlockRequested:
		id += ".r" + strconv.FormatUint(f.FreezeRevision, 10)
	case *RestoreProgress:
		id += "." + f.RestoreID + "." + f.Step
	case RestoreProgress:
		id += "." + f.RestoreID + "." + f.Step
	default:
		if r := restoreIDOf(p); r != "" {
			id += "." + r
		}
	}
	return id
}

// IsTerminal reports whether e ends its backup's freeze: a Resumed, or a
// BackupFailed after which nothing needs resuming. A successful backup goes
// on after it, without anything frozen, until SnapshotReady (or a
// BackupFailed with StepReady); see [Completion].
func IsTerminal(e Event) bool {
	switch p := e.Payload.(type) {
	case *Resumed:
		return true
	case *BackupFailed:
		return !p.ResumePending
	}
	return false
}

// Succeeded reports whether a terminal event ends a successful backup: a
// Resumed that says so, or the SnapshotReady that completes one.
func Succeeded(e Event) bool {
	switch p := e.Payload.(type) {
	case *Resumed:
		return p.Succeeded
	case *SnapshotReady:
		return true
	}
	return false
}

// Completion follows one backup's events, in any order, and tells when the
// backup is complete: failed (a terminal BackupFailed, or a Resumed that says
// the backup failed), or both resumed and ready to restore. Resumed and
// SnapshotReady may come in either order: the application is resumed at the
// cut, while the storage may take minutes to make the snapshot ready.
type Completion struct {
	resumed, ready bool
}

// Observe takes the next event and reports whether the backup is complete;
// the event that completed it is the one to judge with [Succeeded].
func (c *Completion) Observe(e Event) bool {
	switch p := e.Payload.(type) {
	case *Resumed:
		if !p.Succeeded {
			return true
		}
		c.resumed = true
	case *SnapshotReady:
		c.ready = true
	case *BackupFailed:
		if !p.ResumePending {
			return true
		}
	}
	return c.resumed && c.ready
}
