package e2e

import (
	"os"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/test/e2e/consistency"
)

// The benchmarks' own arithmetic, checked without a sandbox: a wrong gap or a
// misread /proc field would make every writer and CPU figure wrong.

func TestLongestAckGap(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	acked := func(ms ...int) []consistency.Write {
		var ws []consistency.Write
		for i, m := range ms {
			ws = append(ws, consistency.Write{N: i + 1, Issued: at(m - 1), Acked: at(m)})
		}
		return ws
	}
	cases := []struct {
		name       string
		writes     []consistency.Write
		start, end int
		want       time.Duration
	}{
		{"steady writes", acked(0, 1, 2, 3, 4, 5), 1, 4, time.Millisecond},
		{"a pause inside the round", acked(0, 1, 2, 130, 131), 1, 131, 128 * time.Millisecond},
		{"a pause still open at the round's end counts whole", acked(0, 1, 2, 130, 131), 0, 50, 128 * time.Millisecond},
		{"a pause that began before the round counts whole", acked(0, 100, 101, 102), 50, 102, 100 * time.Millisecond},
		{"a pause wholly outside the round does not count", acked(0, 100, 101, 102, 103), 101, 103, time.Millisecond},
		{"an unacknowledged last write ends the record", append(acked(0, 1, 2), consistency.Write{N: 4, Issued: at(3)}), 0, 500, time.Millisecond},
		{"no writes", nil, 0, 10, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := longestAckGap(tc.writes, at(tc.start), at(tc.end)); got != tc.want {
				t.Errorf("longestAckGap = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestProcessUsage(t *testing.T) {
	pid := os.Getpid()
	before, err := processCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the kernel's tick-granular count moves.
	deadline := time.Now().Add(10 * time.Second)
	var after time.Duration
	for x := 0; after <= before; x++ {
		if time.Now().After(deadline) {
			t.Fatalf("CPU time stayed at %v for 10 s of busy work", before)
		}
		for i := range 1_000_000 {
			x ^= i
		}
		if after, err = processCPU(pid); err != nil {
			t.Fatal(err)
		}
	}
	rss, err := processRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	// A Go test binary's resident set is megabytes, not bytes or terabytes:
	// a KiB/byte or field mix-up would land outside.
	if rss < 1024 || rss > 64<<20 {
		t.Errorf("VmRSS = %d KiB, want between 1 MiB and 64 GiB", rss)
	}
	if _, err := processCPU(1 << 30); err == nil {
		t.Error("processCPU of a pid that does not exist: no error")
	}
}
