package freeze

import "github.com/freezeframe/freezeframe/services/hooker/blueprint"

// What of a freeze is bound to its holder's life: the lock sessions of a
// KubeExecSession pre-hook (the lock ends with the session's stream) and
// the armed post-hooks (which run by themselves when their stream ends).
// Both are exec streams of the holding process, and one rule follows from
// it: a freeze adopted by another life of the hooker (a takeover, or this
// replica restarted) cannot be called consistent if any of it was bound to
// the dead holder, since the freeze may have ended with it before, or
// while, the snapshot was cut. The holder itself learns of such an end as a
// loss (releaseSessions, armSet.lost) and fails the backup the same way.

// holderBoundLoss says why o's snapshot cannot be trusted when o was
// adopted from a holder that is gone; "" when o was not adopted, or nothing
// of its freeze was bound to the holder.
func holderBoundLoss(o *op, p *plan) string {
	switch {
	case !o.takenOver:
		return ""
	case holdsSessions(p.pre):
		return "the hooker holding the lock session is gone; the lock ended with it"
	case o.armedInPod:
		return "the hooker that armed the post-hook is gone; the armed post-hook may have run by itself (dead man's switch) while the snapshot was cut, so the application may have been writable"
	}
	return ""
}

// holdsSessions reports whether an action takes session-bound locks.
func holdsSessions(a *blueprint.Action) bool {
	for _, ph := range a.Phases {
		if ph.Func == blueprint.FuncKubeExecSession {
			return true
		}
	}
	return false
}

// armsLostReason is the failure of a backup whose armed post-hook ended
// before the resume.
func armsLostReason(lost error, secrets [][]byte) string {
	return blueprint.Redact("armed post-hook ended before the resume (its stream broke, its pod restarted, or it ran by itself): "+
		"the application may have been writable while the snapshot was cut: "+lost.Error(), secrets)
}
