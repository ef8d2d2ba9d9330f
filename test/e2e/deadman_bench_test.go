package e2e

import (
	"testing"
	"time"
)

// BenchmarkSandboxDeadMansSwitch kill -9s freezeframe up, the only hooker, while the
// demo's Redis is frozen (its cut held), b.N times, and measures how long after the kill
// a writer's writes are acknowledged again: the armed post-hook in the pod sees its
// stream end and unfreezes the application by itself. Between kills freezeframe is
// restarted and the backup ended. Target: writable within 1 s of the kill.
func BenchmarkSandboxDeadMansSwitch(b *testing.B) {
	r := startDeadmanRig(b, "bench-deadman")
	defer r.w.Stop(5 * time.Second)
	var writable []time.Duration
	for b.Loop() {
		id, _, after := r.killWhileFrozen(b)
		writable = append(writable, after)
		b.StopTimer()
		r.restartAndEnd(b, id)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(millis(percentile(writable, 50)), "writable-after-kill-ms")
	b.ReportMetric(millis(percentile(writable, 100)), "writable-after-kill-max-ms")
}
