package podexec

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestCaptureKeepsHeadAndTail(t *testing.T) {
	tests := []struct {
		name    string
		max     int
		writes  []string
		want    string
		dropped int64
	}{
		{"under the limit", 16, []string{"abc\n", "def\n"}, "abc\ndef\n", 0},
		{"exactly the limit", 8, []string{"abcd", "efgh"}, "abcdefgh", 0},
		{"one byte over, no lines", 8, []string{"abcdefghi"}, "abcd\n[freezeframe: 1 bytes of output dropped here]\nfghi", 1},
		{
			"cut at line ends",
			20,
			[]string{"line1\nline2\n", "noise noise noise noise\n", "line8\nlast\n"},
			"line1\n[freezeframe: 36 bytes of output dropped here]\nlast\n",
			36,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCapture(tt.max)
			for _, w := range tt.writes {
				if n, err := c.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			got, dropped := c.Bytes()
			if string(got) != tt.want || dropped != tt.dropped {
				t.Errorf("got %q (%d dropped), want %q (%d dropped)", got, dropped, tt.want, tt.dropped)
			}
		})
	}
}

// Phase output lines, which kando prints last, survive a chatty hook.
func TestCaptureKeepsTheLastLines(t *testing.T) {
	c := newCapture(DefaultMaxOutput)
	const out = "###Phase-output###: {\"key\":\"k\",\"value\":\"v\"}\n"
	for range 100_000 {
		c.Write([]byte("progress 42%\n"))
	}
	c.Write([]byte(out))
	got, dropped := c.Bytes()
	if !bytes.HasSuffix(got, []byte("progress 42%\n"+out)) || !bytes.HasPrefix(got, []byte("progress 42%\n")) {
		t.Errorf("head or tail lost: %q ... %q", got[:40], got[len(got)-80:])
	}
	if len(got) > DefaultMaxOutput+100 {
		t.Errorf("kept %d bytes, limit %d", len(got), DefaultMaxOutput)
	}
	if total := int64(100_000*len("progress 42%\n") + len(out)); dropped < total-DefaultMaxOutput || dropped > total {
		t.Errorf("dropped %d of %d", dropped, total)
	}
	if !bytes.Contains(got, fmt.Appendf(nil, "\n[freezeframe: %d bytes of output dropped here]\nprogress", dropped)) {
		t.Errorf("no note of the %d dropped bytes between whole lines", dropped)
	}
}

// Whatever is written, in whatever pieces, the capture is a prefix of the
// stream, the note, and a suffix, within the limit, and the count of
// dropped bytes is exact.
func TestCaptureBoundsAnyStream(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		limit := 2 + r.IntN(300)
		var all bytes.Buffer
		c := newCapture(limit)
		for range r.IntN(20) {
			chunk := make([]byte, r.IntN(200))
			for j := range chunk {
				chunk[j] = "ab\n"[r.IntN(3)]
			}
			all.Write(chunk)
			c.Write(chunk)
		}
		got, dropped := c.Bytes()
		if dropped == 0 {
			if !bytes.Equal(got, all.Bytes()) {
				t.Fatalf("case %d: nothing dropped but %q != %q", i, got, all.Bytes())
			}
			continue
		}
		note := fmt.Sprintf("[freezeframe: %d bytes of output dropped here]\n", dropped)
		at := bytes.Index(got, []byte(note))
		if at < 0 {
			t.Fatalf("case %d: no note %q in %q", i, note, got)
		}
		head, tail := got[:at], got[at+len(note):]
		head = bytes.TrimSuffix(head, []byte("\n"))
		if !bytes.HasPrefix(all.Bytes(), head) || !bytes.HasSuffix(all.Bytes(), tail) {
			t.Fatalf("case %d: %q is not a head and a tail of %q", i, got, all.Bytes())
		}
		if len(got)-len(note) > limit+1 {
			t.Fatalf("case %d: kept %d bytes over a limit of %d", i, len(got)-len(note), limit)
		}
		// The head is got[:at], or got[:at-1] when a newline was added
		// after a head that had none.
		asIs := int64(all.Len()-at-len(tail)) == dropped && bytes.HasPrefix(all.Bytes(), got[:at])
		added := int64(all.Len()-(at-1)-len(tail)) == dropped
		if !asIs && !added {
			t.Fatalf("case %d: dropped %d of %d, kept a head of %d and a tail of %d", i, dropped, all.Len(), at, len(tail))
		}
		if at > limit/2+1 {
			t.Fatalf("case %d: head of %d bytes over half the limit %d", i, at, limit)
		}
	}
}
