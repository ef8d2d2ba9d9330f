//go:build chaos

package chaos_test

import (
	"os"
	"strings"
	"testing"

	"github.com/freezeframe/freezeframe/test/e2e/chaos"
)

// TestChaosMatrix is the full crash matrix (make chaos): every service killed
// at every step, restarted or not, and the scenario rows. It takes ~15
// minutes, so it is built only with the "chaos" tag (make chaos);
// make test runs TestChaosFast. FREEZEFRAME_CHAOS_ROWS=<substring>[|<substring>...] keeps
// only the rows whose description ("SIGKILL hooker / mid cut / restart")
// contains one of them.
func TestChaosMatrix(t *testing.T) {
	rows := chaos.FullMatrix()
	if f := os.Getenv("FREEZEFRAME_CHAOS_ROWS"); f != "" {
		var keep []chaos.Row
		for _, r := range rows {
			for alt := range strings.SplitSeq(f, "|") {
				if strings.Contains(r.String(), alt) {
					keep = append(keep, r)
					break
				}
			}
		}
		rows = keep
	}
	runMatrix(t, rows)
}
