package admission

import (
	"runtime"
	"testing"
	"time"
)

// waitFor polls cond, yielding to the goroutines that make it true, until
// it holds; the test fails after ten seconds. The gate's changes take
// microseconds, so a sleeping poll would cost the simulations most of
// their time.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("the gate did not reach the expected state within 10s")
		}
		runtime.Gosched()
	}
}
