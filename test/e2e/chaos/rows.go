package chaos

import "fmt"

// Step is the moment of a backup at which a fault strikes.
type Step string

// The steps of one backup, in order.
const (
	StepRequested   Step = "request received"
	StepPreHook     Step = "mid pre-hook"
	StepQuiesced    Step = "after Quiesced"
	StepCut         Step = "mid cut"
	StepSnapshotted Step = "after Snapshotted"
	StepPostHook    Step = "mid post-hook"
	StepResumed     Step = "after Resumed"
)

// Steps lists every step in pipeline order.
var Steps = []Step{StepRequested, StepPreHook, StepQuiesced, StepCut, StepSnapshotted, StepPostHook, StepResumed}

// rowKind is what a row does to the system.
type rowKind int

const (
	kindKill rowKind = iota
	kindRedeliver
	kindStopHolder
	kindHoldCut
	kindNATS
	kindRestartAPI
	kindCutExec
)

// Row is one line of the matrix.
type Row struct {
	kind rowKind
	// Service is the killed service (kill rows).
	Service string
	Step    Step
	Restart bool
	// Redeliver is the kind of event republished (redelivery rows), after a
	// backup that succeeded, or failed (FailedBase: the cut held past the cap).
	Redeliver  string
	FailedBase bool
}

// Kill is a row that SIGKILLs service at step, restarting it or not.
func Kill(service string, step Step, restart bool) Row {
	return Row{kind: kindKill, Service: service, Step: step, Restart: restart}
}

// Redeliver is a row that runs a backup to its end, then republishes each of
// its stored events of kind (an events.Kind) with a new Nats-Msg-Id. With
// failed, the backup is made to fail first: its cut is held past the cap.
func Redeliver(kind string, failed bool) Row {
	step := Step("after success")
	if failed {
		step = "after failure"
	}
	return Row{kind: kindRedeliver, Redeliver: kind, FailedBase: failed, Step: step}
}

// StopHolder is a row with two hooker replicas: the one that froze the
// application is SIGSTOPped after Quiesced until its lease went stale and the
// backup ended, then SIGCONTed.
func StopHolder() Row { return Row{kind: kindStopHolder, Step: StepQuiesced, Restart: true} }

// HoldCut is a row whose snapshot create is held past the freeze cap (the
// watchdog unlocks the application), then let through.
func HoldCut() Row { return Row{kind: kindHoldCut, Step: StepCut} }

// NATS node targets of KillNATS.
const (
	NATSNode   = "nats node"
	NATSLeader = "nats stream leader"
)

// KillNATS is a row on a 3-node JetStream cluster (stream and buckets at R3)
// that SIGKILLs a node at step: the stream's leader (target NATSLeader) or
// another node (NATSNode), restarting it or not.
func KillNATS(target string, step Step, restart bool) Row {
	return Row{kind: kindNATS, Service: target, Step: step, Restart: restart}
}

// RestartAPIServer is a row that SIGKILLs kube-apiserver at step and starts
// it again at once (etcd keeps the cluster): every watch, request and exec
// stream of the services breaks, and nothing answers until it is ready.
func RestartAPIServer(step Step) Row { return Row{kind: kindRestartAPI, Step: step, Restart: true} }

// CutExec is a row that closes the connection of every exec stream in
// flight at step (a hook's), as a network failure would.
func CutExec(step Step) Row { return Row{kind: kindCutExec, Step: step} }

// Fault names the row's fault as the table shows it.
func (r Row) Fault() string {
	switch r.kind {
	case kindKill, kindNATS:
		return "SIGKILL " + r.Service
	case kindRedeliver:
		return "redeliver " + r.Redeliver
	case kindStopHolder:
		return "SIGSTOP holder hooker (2 replicas)"
	case kindHoldCut:
		return "cut held past the cap"
	case kindRestartAPI:
		return "SIGKILL kube-apiserver"
	case kindCutExec:
		return "exec stream cut"
	}
	return fmt.Sprintf("row kind %d", r.kind)
}

func (r Row) String() string {
	restart := "no restart"
	if r.Restart {
		restart = "restart"
	}
	return fmt.Sprintf("%s / %s / %s", r.Fault(), r.Step, restart)
}

// FullMatrix is every service killed at every step, restarted and not, and the
// scenario rows.
func FullMatrix() []Row {
	var rows []Row
	for _, svc := range ServiceNames {
		for _, step := range Steps {
			rows = append(rows, Kill(svc, step, true), Kill(svc, step, false))
		}
	}
	for _, k := range []string{"requested", "quiesced", "snapshotted", "resumed", "snapshot-ready"} {
		rows = append(rows, Redeliver(k, false))
	}
	for _, k := range []string{"requested", "quiesced", "unlock-requested", "failed", "resumed"} {
		rows = append(rows, Redeliver(k, true))
	}
	rows = append(rows, StopHolder(), HoldCut(),
		RestartAPIServer(StepQuiesced), RestartAPIServer(StepPostHook), CutExec(StepPreHook), CutExec(StepPostHook))
	return append(rows, NATSMatrix()...)
}

// NATSMatrix kills a node of a 3-node NATS cluster, the stream leader or not,
// mid-backup.
func NATSMatrix() []Row {
	var rows []Row
	for _, target := range []string{NATSNode, NATSLeader} {
		for _, step := range []Step{StepQuiesced, StepCut, StepSnapshotted} {
			rows = append(rows, KillNATS(target, step, true))
		}
		rows = append(rows, KillNATS(target, StepQuiesced, false))
	}
	return rows
}

// FastMatrix is one SIGKILL (and restart) per service, where it hurts most.
func FastMatrix() []Row {
	return []Row{
		Kill(Scheduler, StepRequested, true),
		Kill(Hooker, StepQuiesced, true),
		Kill(Snapshotter, StepCut, true),
		Kill(Notifier, StepResumed, true),
	}
}
