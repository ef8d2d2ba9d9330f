package eventstest

import (
	"testing"
	"time"
)

// pollEvery is how often Eventually and Consistently look at a condition.
const pollEvery = 10 * time.Millisecond

// Eventually polls cond until it holds, failing the test when it does not
// within timeout. It is how tests wait: never a sleep and a hope.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		<-tick.C
	}
}

// Consistently checks that cond holds for the whole of d, polling it and
// failing the test the first time it does not: for what must not happen
// (a watchdog firing during an outage, a second backup going ahead).
func Consistently(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if !cond() {
			t.Fatalf("%s: broken after %s", what, d-time.Until(deadline))
		}
		<-tick.C
	}
}
