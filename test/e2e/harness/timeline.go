package harness

import (
	"fmt"
	"strings"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// Payload returns the payload of the first event of type *T in evs.
func Payload[T any](evs []events.Event) (*T, bool) {
	for _, ev := range evs {
		if p, ok := any(ev.Payload).(*T); ok {
			return p, true
		}
	}
	return nil, false
}

// Payloads returns the payloads of every event of type *T in evs, in order.
func Payloads[T any](evs []events.Event) []*T {
	var out []*T
	for _, ev := range evs {
		if p, ok := any(ev.Payload).(*T); ok {
			out = append(out, p)
		}
	}
	return out
}

// Kinds lists the kinds of evs in order.
func Kinds(evs []events.Event) []events.Kind {
	out := make([]events.Kind, len(evs))
	for i, ev := range evs {
		out[i] = ev.Kind()
	}
	return out
}

// Timeline formats the events of one backup one per line: wall time, time since the
// first event, kind, and what it says.
func Timeline(evs []events.Event) string {
	var b strings.Builder
	var first time.Time
	for _, ev := range evs {
		if first.IsZero() {
			first = ev.Time()
		}
		fmt.Fprintf(&b, "%s  +%-10s %-16s %s\n", ev.Time().Local().Format("15:04:05.000"),
			Round(ev.Time().Sub(first)), ev.Kind(), Describe(ev))
	}
	return b.String()
}

// Describe says in one line what an event carries.
func Describe(ev events.Event) string {
	switch p := ev.Payload.(type) {
	case *events.BackupRequested:
		return "by " + p.RequestedBy
	case *events.Quiesced:
		var hooks []string
		for _, h := range p.Hooks {
			hooks = append(hooks, fmt.Sprintf("%s@%s %s", h.Phase, h.Pod, Round(h.Duration.Std())))
		}
		return fmt.Sprintf("blueprint %s, hooks [%s], volumes %v, deadline %s", p.Blueprint,
			strings.Join(hooks, ", "), p.Volumes, p.FreezeDeadline.Local().Format("15:04:05.000"))
	case *events.Snapshotted:
		var snaps []string
		for _, s := range p.Snapshots {
			snaps = append(snaps, fmt.Sprintf("%s→%s (cut %s)", s.PVC, s.Name, s.CutAt.Local().Format("15:04:05.000")))
		}
		return fmt.Sprintf("%d cut in %s (%s%s): %s", len(p.Snapshots), Round(p.CutDuration.Std()), p.Mode, groupSuffix(p.Group), strings.Join(snaps, ", "))
	case *events.SnapshotReady:
		var snaps []string
		for _, s := range p.Snapshots {
			snaps = append(snaps, fmt.Sprintf("%s→%s", s.PVC, s.Name))
		}
		return fmt.Sprintf("%d ready %s after the cut (%s%s): %s; keep %d, pruned %v", len(p.Snapshots), Round(p.ReadyAfter.Std()), p.Mode, groupSuffix(p.Group), strings.Join(snaps, ", "), p.SnapshotsToKeep, p.Pruned)
	case *events.Resumed:
		return fmt.Sprintf("reason %s, succeeded %v, frozen for %s", p.Reason, p.Succeeded, Round(p.FrozenFor.Std()))
	case *events.BackupFailed:
		return fmt.Sprintf("step %s, resume pending %v: %s", p.Step, p.ResumePending, p.Reason)
	case *events.UnlockRequested:
		return fmt.Sprintf("by %s, holder %s, holder gone %v: %s", p.RequestedBy, p.Holder, p.HolderGone, p.Reason)
	}
	return ""
}

// Round shortens a duration for people.
func Round(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func groupSuffix(group string) string {
	if group == "" {
		return ""
	}
	return " " + group
}
