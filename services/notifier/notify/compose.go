package notify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/services/notifier/slack"
)

// Report is everything a message says about a backup: its outcome and what
// the earlier events of the backup add to it.
type Report struct {
	Outcome
	Snapshots    []events.Snapshot
	SnapshotMode string
	RequestedBy  string
	Blueprint    string
	Total        time.Duration // from the request to the end; 0 when unknown
	UnlockReason string        // why the watchdog or an operator forced the resume
	UnlockHolder string
	ResumeReason string
}

// BuildReport completes the outcome of ev from the backup's history. A
// missing earlier event only leaves its part out; a failure to read the
// stream is returned, so that the notification is retried.
func BuildReport(ctx context.Context, h History, ev events.Event, o Outcome) (Report, error) {
	r := Report{Outcome: o}
	if o.Restore != nil {
		return r, nil // the restore's own event says it all
	}
	ref := events.BackupRef{BackupID: o.BackupID, Workload: o.Workload}
	look := func(k events.Kind) (events.Event, bool, error) {
		e, err := h.Lookup(ctx, k, ref)
		if errors.Is(err, events.ErrNoEvent) {
			return events.Event{}, false, nil
		}
		return e, err == nil, err
	}
	if req, ok, err := look(events.KindRequested); err != nil {
		return r, err
	} else if ok {
		if p, ok := req.Payload.(*events.BackupRequested); ok {
			r.RequestedBy, r.Blueprint = p.RequestedBy, p.Blueprint
		}
		if !req.Time().IsZero() && o.At.After(req.Time()) {
			r.Total = o.At.Sub(req.Time())
		}
	}
	if q, ok, err := look(events.KindQuiesced); err != nil {
		return r, err
	} else if ok {
		if p, ok := q.Payload.(*events.Quiesced); ok && p.Blueprint != "" {
			r.Blueprint = p.Blueprint
		}
	}
	if s, ok, err := look(events.KindSnapshotted); err != nil {
		return r, err
	} else if ok {
		if p, ok := s.Payload.(*events.Snapshotted); ok {
			r.Snapshots, r.SnapshotMode = p.Snapshots, p.Mode
		}
	}
	if res, ok := ev.Payload.(*events.Resumed); ok {
		r.ResumeReason = res.Reason
		if !o.Succeeded {
			// The Resumed says why it resumed; the BackupFailed says which step failed.
			if f, ok, err := look(events.KindFailed); err != nil {
				return r, err
			} else if ok {
				if p, ok := f.Payload.(*events.BackupFailed); ok {
					r.Step, r.Reason = p.Step, p.Reason
				}
			}
		}
		if o.ForcedUnlock {
			if u, ok, err := look(events.KindUnlockRequested); err != nil {
				return r, err
			} else if ok {
				if p, ok := u.Payload.(*events.UnlockRequested); ok {
					r.UnlockReason, r.UnlockHolder = p.Reason, p.Holder
				}
			}
		}
	}
	return r, nil
}

func (r Report) workload() string {
	w := r.Workload
	return fmt.Sprintf("%s/%s in %s (cluster %s)", strings.ToLower(w.Kind), w.Name, w.Namespace, w.Cluster)
}

func (r Report) workloadMd() string {
	w := r.Workload
	return fmt.Sprintf("`%s/%s` in `%s` (cluster `%s`)", strings.ToLower(w.Kind), w.Name, w.Namespace, w.Cluster)
}

func (r Report) frozen() string {
	if !r.Frozen {
		return "not frozen"
	}
	return r.FrozenFor.Round(time.Millisecond).String()
}

func (r Report) total() string {
	if r.Total == 0 {
		return "unknown"
	}
	return r.Total.Round(time.Millisecond).String()
}

func (r Report) unlockedBy() string {
	if r.ResumeReason == events.ResumeOperator {
		return "an operator"
	}
	return "the watchdog"
}

func (r Report) failure() string {
	reason := r.Reason
	if reason == "" {
		reason = r.ResumeReason
	}
	if r.Step == "" {
		return reason
	}
	return "at step " + r.Step + ": " + reason
}

// Message lays the report out for Slack: Block Kit for the channel, and a
// one-line text for notifications and screen readers. Every value from the
// events is escaped first (see escaped): the layout below adds markup only.
func (r Report) Message() slack.Message {
	r = r.escaped()
	if r.Restore != nil {
		return r.restoreMessage()
	}
	var m slack.Message
	ctx := r.contextLine()
	switch {
	case r.ForcedUnlock:
		why := r.UnlockReason
		if why == "" {
			why = r.ResumeReason
		}
		result := "The backup succeeded."
		if !r.Succeeded {
			result = "The backup failed " + r.failure() + "."
		}
		m.Text = fmt.Sprintf(":rotating_light: FORCED UNLOCK: %s stayed frozen for %s and was resumed by %s (%s). %s Backup %s.",
			r.workload(), r.frozen(), r.unlockedBy(), why, result, r.BackupID)
		fields := []string{"*Frozen for*\n" + r.frozen(), "*Unlocked by*\n" + r.unlockedBy(), "*Why*\n" + why, "*Backup*\n`" + r.BackupID + "`"}
		if !r.Succeeded && r.Step != "" {
			fields = append(fields, "*Failed step*\n"+r.Step, "*Reason*\n"+r.Reason)
		}
		if r.UnlockHolder != "" {
			fields = append(fields, "*Freeze held by*\n`"+r.UnlockHolder+"`")
		}
		m.Blocks = []slack.Block{
			slack.Header(fmt.Sprintf("🚨 Forced unlock: %s/%s in %s", strings.ToLower(r.Workload.Kind), r.Workload.Name, r.Workload.Namespace)),
			slack.Section(fmt.Sprintf(":rotating_light: *%s stayed frozen for %s* and was resumed by %s, not by the backup. %s",
				r.workloadMd(), r.frozen(), r.unlockedBy(), result)),
			slack.Fields(fields...),
			slack.Context(ctx),
		}
	case r.Succeeded:
		m.Text = fmt.Sprintf(":white_check_mark: Backup succeeded: %s. %d snapshot(s), frozen for %s, total %s. Backup %s.",
			r.workload(), len(r.Snapshots), r.frozen(), r.total(), r.BackupID)
		m.Blocks = []slack.Block{
			slack.Section(":white_check_mark: *Backup succeeded* · " + r.workloadMd()),
			slack.Fields("*Frozen for*\n"+r.frozen(), "*Total time*\n"+r.total(),
				fmt.Sprintf("*Snapshots*\n%d%s", len(r.Snapshots), mode(r.SnapshotMode)), "*Backup*\n`"+r.BackupID+"`"),
		}
		if len(r.Snapshots) > 0 {
			var b strings.Builder
			for _, s := range r.Snapshots {
				fmt.Fprintf(&b, "• `%s` ← PVC `%s`\n", s.Name, s.PVC)
			}
			m.Blocks = append(m.Blocks, slack.Section(strings.TrimSpace(b.String())))
		}
		m.Blocks = append(m.Blocks, slack.Context(ctx))
	default:
		m.Text = fmt.Sprintf(":x: Backup failed: %s %s. Frozen: %s. Backup %s.", r.workload(), r.failure(), r.frozen(), r.BackupID)
		step := r.Step
		if step == "" {
			step = "unknown"
		}
		m.Blocks = []slack.Block{
			slack.Section(":x: *Backup failed* · " + r.workloadMd()),
			slack.Fields("*Step*\n"+step, "*Reason*\n"+orDash(r.Reason), "*Frozen for*\n"+r.frozen(), "*Backup*\n`"+r.BackupID+"`"),
			slack.Context(ctx),
		}
	}
	return m
}

// escaped returns a copy of the report with every text taken from events
// escaped for Slack (slack.Escape), so that a workload, a reason or a
// requester cannot mention a channel or add a link. Kubernetes names cannot
// hold &, < or >, but the events carrying them may be forged, and reasons
// (a hook's stderr) are free text.
func (r Report) escaped() Report {
	e := slack.Escape
	r.BackupID, r.Step, r.Reason = e(r.BackupID), e(r.Step), e(r.Reason)
	r.Workload.Cluster, r.Workload.Namespace, r.Workload.Kind, r.Workload.Name = e(r.Workload.Cluster), e(r.Workload.Namespace), e(r.Workload.Kind), e(r.Workload.Name)
	r.SnapshotMode, r.RequestedBy, r.Blueprint = e(r.SnapshotMode), e(r.RequestedBy), e(r.Blueprint)
	r.UnlockReason, r.UnlockHolder, r.ResumeReason = e(r.UnlockReason), e(r.UnlockHolder), e(r.ResumeReason)
	r.Snapshots = slices.Clone(r.Snapshots)
	for i := range r.Snapshots {
		s := &r.Snapshots[i]
		s.Name, s.Namespace, s.PVC = e(s.Name), e(s.Namespace), e(s.PVC)
	}
	if r.Restore != nil {
		rs := *r.Restore
		rs.RestoreID, rs.TargetNamespace = e(rs.RestoreID), e(rs.TargetNamespace)
		rs.Claims = slices.Clone(rs.Claims)
		for i := range rs.Claims {
			c := &rs.Claims[i]
			c.Namespace, c.Name, c.PVC, c.Snapshot, c.Volume, c.Capacity = e(c.Namespace), e(c.Name), e(c.PVC), e(c.Snapshot), e(c.Volume), e(c.Capacity)
		}
		r.Restore = &rs
	}
	return r
}

func mode(m string) string {
	if m == "" {
		return ""
	}
	return " (" + m + ")"
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func (r Report) contextLine() string {
	parts := []string{}
	if r.RequestedBy != "" {
		parts = append(parts, "requested by "+r.RequestedBy)
	}
	if r.Blueprint != "" {
		parts = append(parts, "blueprint "+r.Blueprint)
	}
	if r.ResumeReason != "" && !r.Succeeded {
		parts = append(parts, "resumed: "+r.ResumeReason)
	}
	if !r.At.IsZero() {
		parts = append(parts, r.At.UTC().Format(time.RFC3339))
	}
	if len(parts) == 0 {
		return "freezeframe"
	}
	return "freezeframe · " + strings.Join(parts, " · ")
}

// restoreMessage lays out the end of a restore.
func (r Report) restoreMessage() slack.Message {
	var m slack.Message
	rs := r.Restore
	at := "freezeframe"
	if !r.At.IsZero() {
		at += " · " + r.At.UTC().Format(time.RFC3339)
	}
	var b strings.Builder
	for _, c := range rs.Claims {
		switch {
		case c.Volume != "":
			fmt.Fprintf(&b, "• `%s` bound to `%s` (%s) ← `%s` (PVC `%s`)\n", c.Name, c.Volume, orDash(c.Capacity), c.Snapshot, c.PVC)
		case c.WaitsForConsumer:
			fmt.Fprintf(&b, "• `%s` ← `%s` (PVC `%s`), bound when a pod uses it\n", c.Name, c.Snapshot, c.PVC)
		default:
			fmt.Fprintf(&b, "• `%s` ← `%s` (PVC `%s`), not bound\n", c.Name, c.Snapshot, c.PVC)
		}
	}
	if r.Succeeded {
		consistent := "consistent"
		if !rs.Consistent {
			consistent = "NOT consistent (restored with --allow-inconsistent)"
		}
		m.Text = fmt.Sprintf(":leftwards_arrow_with_hook: Restore succeeded: backup %s of %s, %d claim(s) bound in namespace %s in %s; the backup is %s. Restore %s.",
			r.BackupID, r.workload(), len(rs.Claims), rs.TargetNamespace, rs.Took.Round(time.Millisecond), consistent, rs.RestoreID)
		m.Blocks = []slack.Block{
			slack.Section(":leftwards_arrow_with_hook: *Restore succeeded* · " + r.workloadMd()),
			slack.Fields("*Into namespace*\n`"+rs.TargetNamespace+"`", fmt.Sprintf("*Claims*\n%d", len(rs.Claims)),
				"*Backup*\n`"+r.BackupID+"` ("+consistent+")", "*Took*\n"+rs.Took.Round(time.Millisecond).String()),
		}
		if b.Len() > 0 {
			m.Blocks = append(m.Blocks, slack.Section(strings.TrimSpace(b.String())))
		}
		m.Blocks = append(m.Blocks, slack.Context(at+" · restore "+rs.RestoreID))
		return m
	}
	m.Text = fmt.Sprintf(":x: Restore failed: backup %s of %s into namespace %s: %s. Restore %s.",
		r.BackupID, r.workload(), rs.TargetNamespace, r.Reason, rs.RestoreID)
	m.Blocks = []slack.Block{
		slack.Section(":x: *Restore failed* · " + r.workloadMd()),
		slack.Fields("*Into namespace*\n`"+orDash(rs.TargetNamespace)+"`", "*Reason*\n"+orDash(r.Reason), "*Backup*\n`"+r.BackupID+"`",
			fmt.Sprintf("*Claims made*\n%d (left in place)", len(rs.Claims))),
	}
	if b.Len() > 0 {
		m.Blocks = append(m.Blocks, slack.Section(strings.TrimSpace(b.String())))
	}
	m.Blocks = append(m.Blocks, slack.Context(at+" · restore "+rs.RestoreID))
	return m
}
