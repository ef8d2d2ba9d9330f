package consistency

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Freeze is the window in which the application was frozen, as the events report it.
type Freeze struct {
	// From is when the pre-hook had returned (Quiesced.QuiescedAt): writes were paused
	// by then.
	From time.Time
	// Until is when the post-hook started (QuiescedAt + Resumed.FrozenFor): writes could
	// not resume before.
	Until time.Time
}

// Verdict is what a snapshot's content proves about the freeze.
type Verdict struct {
	Consistent bool
	// Problems says why not, one line each.
	Problems []string

	// Issued and Acked count the writer's writes.
	Issued, Acked int
	// InSnapshot counts the numbered keys in the snapshot; MaxInSnapshot is the highest.
	InSnapshot, MaxInSnapshot int
	// LastAckedBefore is the last write acknowledged before the post-hook started: it
	// ran before the pause, so it and every earlier one must be in the snapshot.
	LastAckedBefore int
	// Held is the write in flight when the freeze ended (sent before the post-hook
	// started, acknowledged after): the paused server held it, so it ran after the resume
	// and must not be in the snapshot. It shows that writes were paused when it waited
	// for at least half the freeze (a write takes well under a millisecond otherwise);
	// 0 when there is none.
	Held int
	// HeldFor is how long Held waited for its acknowledgement.
	HeldFor time.Duration
	// PausedFor is the gap between the acknowledgements of the write before Held and of
	// Held: how long no write completed, as the writer saw it.
	PausedFor time.Duration
	// FirstSentDuring is the first write sent after the freeze began (0: none); neither
	// it nor any later write may be in the snapshot.
	FirstSentDuring int
}

// Check compares a snapshot's numbered keys (number -> value) with what the writer did.
//
// Writes are sequential (write n is sent after n-1 was acknowledged) and durable once
// acknowledged (Redis AOF with fsync always), and a paused server runs no write from the
// moment the pause took effect (before f.From) until the post-hook lifted it (after
// f.Until); the snapshot is cut in between. Hence a consistent snapshot holds exactly
// the keys 1..M, each with its own number as value, where M is at least every write
// acknowledged before f.Until (it ran before the pause) and less than the write held by
// the pause and every write sent after f.From (they ran after the resume).
func Check(writes []Write, present map[int]string, f Freeze) Verdict {
	v := Verdict{Issued: len(writes), InSnapshot: len(present)}
	problem := func(format string, args ...any) { v.Problems = append(v.Problems, fmt.Sprintf(format, args...)) }
	var early []int // sent during the freeze, acknowledged before it ended
	for _, w := range writes {
		acked := !w.Acked.IsZero()
		if acked {
			v.Acked++
		}
		if acked && w.Acked.Before(f.Until) {
			v.LastAckedBefore = w.N
		}
		if v.Held == 0 && acked && w.Issued.Before(f.Until) && !w.Acked.Before(f.Until) {
			v.Held, v.HeldFor = w.N, w.Acked.Sub(w.Issued)
			if w.N > 1 && !writes[w.N-2].Acked.IsZero() {
				v.PausedFor = w.Acked.Sub(writes[w.N-2].Acked)
			}
		}
		if !w.Issued.Before(f.From) {
			if v.FirstSentDuring == 0 {
				v.FirstSentDuring = w.N
			}
			if acked && w.Acked.Before(f.Until) {
				early = append(early, w.N)
			}
		}
	}
	nums := make([]int, 0, len(present))
	for n := range present {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	if len(nums) > 0 {
		v.MaxInSnapshot = nums[len(nums)-1]
	}

	// Contiguous 1..M, each with its own value: nothing lost in the middle, nothing torn.
	var missing []int
	for n := 1; n <= v.MaxInSnapshot; n++ {
		if _, ok := present[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		problem("keys missing below the highest one (%d): %s", v.MaxInSnapshot, short(missing))
	}
	if len(nums) > 0 && nums[0] < 1 {
		problem("unexpected key number %d", nums[0])
	}
	var wrong []int
	for n, val := range present {
		if val != strconv.Itoa(n) {
			wrong = append(wrong, n)
		}
	}
	slices.Sort(wrong)
	if len(wrong) > 0 {
		problem("keys with a wrong value: %s", short(wrong))
	}
	if v.MaxInSnapshot > len(writes) {
		problem("key %d in the snapshot was never written", v.MaxInSnapshot)
	}

	// Acknowledged before the resume: it ran before the pause, and is durable.
	if v.MaxInSnapshot < v.LastAckedBefore {
		problem("writes %d..%d were acknowledged before the resume but are not in the snapshot", v.MaxInSnapshot+1, v.LastAckedBefore)
	}
	// Writes sent while frozen must wait for the resume.
	if len(early) > 0 {
		problem("writes sent during the freeze were acknowledged before the resume (writes were not paused): %s", short(early))
	}
	if v.Held == 0 || v.HeldFor < f.Until.Sub(f.From)/2 {
		problem("no write waited through the freeze %s..%s: nothing shows that writes were paused", clock(f.From), clock(f.Until))
	}
	if v.Held != 0 && v.MaxInSnapshot >= v.Held {
		problem("write %d, held by the pause until the resume, is in the snapshot: the snapshot was cut after writes resumed", v.Held)
	}
	if v.FirstSentDuring != 0 && v.MaxInSnapshot >= v.FirstSentDuring {
		problem("writes %d..%d were sent after the freeze began but are in the snapshot", v.FirstSentDuring, v.MaxInSnapshot)
	}
	v.Consistent = len(v.Problems) == 0
	return v
}

// Summary says in a few lines what the verdict rests on.
func (v Verdict) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "writer: %d writes sent, %d acknowledged\n", v.Issued, v.Acked)
	fmt.Fprintf(&b, "snapshot: %d numbered keys, highest %d\n", v.InSnapshot, v.MaxInSnapshot)
	fmt.Fprintf(&b, "acknowledged before the resume: k:1..k:%d (all must be in the snapshot)\n", v.LastAckedBefore)
	if v.Held != 0 {
		fmt.Fprintf(&b, "held by the pause: k:%d, acknowledged %s after it was sent, after the resume (must not be in the snapshot)\n",
			v.Held, v.HeldFor.Round(time.Microsecond))
	}
	if v.PausedFor > 0 {
		fmt.Fprintf(&b, "writes paused for %s (no acknowledgement between k:%d and k:%d)\n", v.PausedFor.Round(time.Microsecond), v.Held-1, v.Held)
	}
	for _, p := range v.Problems {
		fmt.Fprintf(&b, "PROBLEM: %s\n", p)
	}
	return b.String()
}

func short(ns []int) string {
	var parts []string
	for i, n := range ns {
		if i == 10 {
			parts = append(parts, fmt.Sprintf("... (%d in all)", len(ns)))
			break
		}
		parts = append(parts, strconv.Itoa(n))
	}
	return strings.Join(parts, ", ")
}

func clock(t time.Time) string { return t.Local().Format("15:04:05.000000") }
