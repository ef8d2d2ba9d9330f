package consistency

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// writesAround simulates a sequential writer, one write per millisecond from t0, whose
// write number held is sent before the freeze [from, until) and acknowledged after it.
// With held = 0 nothing is held: writes go on through the freeze.
func writesAround(t0 time.Time, n, held int, until time.Time) []Write {
	var out []Write
	at := t0
	for i := 1; i <= n; i++ {
		w := Write{N: i, Issued: at, Acked: at.Add(200 * time.Microsecond)}
		if i == held {
			w.Acked = until.Add(time.Millisecond)
		}
		out = append(out, w)
		at = w.Acked.Add(800 * time.Microsecond)
	}
	return out
}

func keys(from, to int) map[int]string {
	m := map[int]string{}
	for i := from; i <= to; i++ {
		m[i] = strconv.Itoa(i)
	}
	return m
}

func TestCheck(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	// Write 100 is sent at ~99ms; the pause began before, the freeze is 100ms..400ms.
	from, until := t0.Add(100*time.Millisecond), t0.Add(400*time.Millisecond)
	f := Freeze{From: from, Until: until}
	writes := writesAround(t0, 150, 100, until)

	tests := []struct {
		name    string
		writes  []Write
		present map[int]string
		problem string // "" = consistent
	}{
		{name: "exactly what ran before the pause", writes: writes, present: keys(1, 99)},
		{name: "acknowledged write missing", writes: writes, present: keys(1, 98), problem: "acknowledged before the resume but are not in the snapshot"},
		{name: "gap", writes: writes, present: func() map[int]string { m := keys(1, 99); delete(m, 50); return m }(), problem: "keys missing"},
		{name: "torn value", writes: writes, present: func() map[int]string { m := keys(1, 99); m[7] = "x"; return m }(), problem: "wrong value"},
		{name: "cut after the resume", writes: writes, present: keys(1, 100), problem: "held by the pause until the resume, is in the snapshot"},
		{name: "cut long after the resume", writes: writes, present: keys(1, 120), problem: "sent after the freeze began"},
		{name: "writes not paused", writes: writesAround(t0, 600, 0, until), present: keys(1, 99), problem: "not paused"},
		{name: "writer idle when the freeze began", writes: func() []Write {
			w := writesAround(t0, 150, 100, until)
			w[99].Issued = from.Add(2 * time.Millisecond) // sent just after Quiesced, held to the end
			return w
		}(), present: keys(1, 99)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := Check(tc.writes, tc.present, f)
			if tc.problem == "" {
				if !v.Consistent {
					t.Fatalf("want consistent, got %v", v.Problems)
				}
				if v.Held != 100 || v.LastAckedBefore != 99 || v.PausedFor < 300*time.Millisecond {
					t.Errorf("verdict %+v", v)
				}
				return
			}
			if v.Consistent || !strings.Contains(strings.Join(v.Problems, "\n"), tc.problem) {
				t.Fatalf("want a problem with %q, got consistent=%v %v", tc.problem, v.Consistent, v.Problems)
			}
		})
	}
}
