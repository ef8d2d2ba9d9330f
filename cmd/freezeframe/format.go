package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// describe says in one line what an event means for the person watching.
func describe(ev events.Event) string {
	switch p := ev.Payload.(type) {
	case *events.BackupRequested:
		s := "requested by " + orDash(p.RequestedBy)
		if p.Blueprint != "" {
			s += ", blueprint " + p.Blueprint
		}
		return s
	case *events.Quiesced:
		var hooks []string
		for _, h := range p.Hooks {
			hooks = append(hooks, fmt.Sprintf("%s@%s %s", h.Phase, h.Pod, round(h.Duration.Std())))
		}
		s := fmt.Sprintf("frozen by %s (%s), resume by %s at the latest", p.Blueprint, strings.Join(hooks, ", "), p.FreezeDeadline.Local().Format("15:04:05"))
		if p.AdmissionWait > 0 {
			// Freeze admission kept it unfrozen while its storage was busy.
			s += fmt.Sprintf("; waited %s for its turn on the storage", round(p.AdmissionWait.Std()))
		}
		return s
	case *events.Snapshotted:
		var snaps []string
		for _, s := range p.Snapshots {
			snaps = append(snaps, s.PVC+"→"+s.Name)
		}
		mode := p.Mode
		if p.Group != "" {
			mode += " " + p.Group
			for i, s := range p.Snapshots {
				if s.Name == "" {
					snaps[i] = s.PVC
				}
			}
		}
		return fmt.Sprintf("%d snapshot(s) cut in %s (%s): %s", len(p.Snapshots), round(p.CutDuration.Std()), mode, strings.Join(snaps, ", "))
	case *events.SnapshotReady:
		s := fmt.Sprintf("%d snapshot(s) ready to restore %s after the cut", len(p.Snapshots), round(p.ReadyAfter.Std()))
		if p.Group != "" {
			var members []string
			for _, m := range p.Snapshots {
				members = append(members, m.PVC+"→"+m.Name)
			}
			s += " (group " + p.Group + ": " + strings.Join(members, ", ") + ")"
		}
		if p.SnapshotsToKeep > 0 {
			s += fmt.Sprintf("; keeping %d, pruned %d older (%s)", p.SnapshotsToKeep, len(p.Pruned), strings.Join(p.Pruned, ", "))
		}
		return s
	case *events.Resumed:
		outcome := "backup succeeded"
		if !p.Succeeded {
			outcome = "backup failed"
		}
		return fmt.Sprintf("writes resumed after %s frozen (%s; %s)", round(p.FrozenFor.Std()), p.Reason, outcome)
	case *events.BackupFailed:
		s := fmt.Sprintf("%s failed: %s", p.Step, p.Reason)
		if p.ResumePending {
			s += " (resume pending)"
		}
		return s
	case *events.UnlockRequested:
		return fmt.Sprintf("unlock requested by %s: %s", orDash(p.RequestedBy), p.Reason)
	case *events.RestoreRequested:
		s := fmt.Sprintf("restore %s requested by %s: %d claim(s) in %s", p.RestoreID, orDash(p.RequestedBy), len(p.Volumes), p.Target())
		if p.AllowInconsistent {
			s += " (inconsistent allowed)"
		}
		return s
	case *events.Restored:
		var claims []string
		for _, c := range p.Claims {
			claims = append(claims, c.Name+"←"+c.Snapshot)
		}
		s := fmt.Sprintf("restore %s: %d claim(s) bound in %s in %s: %s", p.RestoreID, len(p.Claims), p.TargetNamespace, round(p.Took.Std()), strings.Join(claims, ", "))
		if !p.Consistent {
			s += " (backup not consistent)"
		}
		return s
	case *events.RestoreFailed:
		return fmt.Sprintf("restore %s failed: %s", p.RestoreID, p.Reason)
	case *events.RestoreProgress:
		return fmt.Sprintf("restore %s: %s: %s", p.RestoreID, p.Step, p.Detail)
	}
	return ""
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
