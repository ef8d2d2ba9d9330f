package events

import "slices"

// Who may say what. This table is the one owner of the rule: the NATS
// permissions each identity gets are derived from it, and every consumer
// checks a delivered event's source against it, so that a publish the bus
// let through by mistake (no permissions configured, a too-wide grant)
// still does not move a backup.

// Role is an identity on the bus: a freezeframe service, or a person or
// program using the CLI or the Go client.
type Role string

// Roles. The services each emit their own event kinds; a requester asks for
// backups and reads events; an operator may also unlock and restore; admin
// sets up the stream, its consumers and buckets and is never a service's
// identity.
const (
	RoleScheduler   Role = "scheduler"
	RoleHooker      Role = "hooker"
	RoleSnapshotter Role = "snapshotter"
	RoleNotifier    Role = "notifier"
	RoleRequester   Role = "requester"
	RoleOperator    Role = "operator"
	RoleAdmin       Role = "admin"
)

// Roles lists every role, services first.
func Roles() []Role {
	return []Role{RoleScheduler, RoleHooker, RoleSnapshotter, RoleNotifier, RoleRequester, RoleOperator, RoleAdmin}
}

// Source is the CloudEvents source a role's events carry.
func (r Role) Source() string {
	switch r {
	case RoleRequester, RoleOperator:
		return SourceCLI
	}
	return "/freezeframe/" + string(r)
}

// Sources of events from people and programs outside the services: the
// CLI, and the Go client's default.
const (
	SourceCLI    = "/freezeframe/cli"
	SourceClient = "/freezeframe/client"
)

// emits is what each role may publish.
var emits = map[Role][]Kind{
	RoleScheduler:   {KindRequested, KindFailed},
	RoleHooker:      {KindQuiesced, KindResumed, KindFailed, KindUnlockRequested},
	RoleSnapshotter: {KindSnapshotted, KindSnapshotReady, KindFailed, KindRestoreStep, KindRestored, KindRestoreFailed},
	RoleNotifier:    nil,
	RoleRequester:   {KindRequested},
	RoleOperator:    {KindRequested, KindUnlockRequested, KindRestoreRequested},
	RoleAdmin:       nil,
}

// Emits lists the event kinds role r may publish.
func (r Role) Emits() []Kind { return slices.Clone(emits[r]) }

// MayEmit reports whether role r may publish events of kind k.
func (r Role) MayEmit(k Kind) bool { return slices.Contains(emits[r], k) }

// SourcesOf lists the CloudEvents sources an event of kind k may come from:
// the sources of every role that may emit it. Events from people and
// programs (requester, operator) may carry the CLI's or the Go client's
// source.
func SourcesOf(k Kind) []string {
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, r := range Roles() {
		if !r.MayEmit(k) {
			continue
		}
		add(r.Source())
		if r == RoleRequester || r == RoleOperator {
			add(SourceClient)
		}
	}
	return out
}
