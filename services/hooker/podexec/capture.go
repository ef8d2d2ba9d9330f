package podexec

import (
	"bytes"
	"fmt"
)

// capture is an io.Writer that keeps the first and the last bytes written
// to it, at most max in all, and counts the rest. Memory stays bounded
// however much a command prints. It is not safe for concurrent writes (a
// stream's writes come from one goroutine).
type capture struct {
	head    []byte // the first headMax bytes
	headMax int
	tail    []byte // a ring of the last tailMax bytes once full
	tailMax int
	next    int // where the ring is written next, once full
	total   int64
}

// newCapture returns a capture keeping at most n bytes (at least 2), plus
// the line saying what was dropped.
func newCapture(n int) *capture {
	n = max(n, 2)
	return &capture{headMax: n / 2, tailMax: n - n/2}
}

// Write keeps what fits in the head and the tail; it never fails.
func (c *capture) Write(p []byte) (int, error) {
	n := len(p)
	c.total += int64(n)
	if room := c.headMax - len(c.head); room > 0 {
		k := min(room, len(p))
		c.head = append(c.head, p[:k]...)
		p = p[k:]
	}
	if len(p) >= c.tailMax {
		c.tail = append(c.tail[:0], p[len(p)-c.tailMax:]...)
		c.next = 0
		return n, nil
	}
	if room := c.tailMax - len(c.tail); room > 0 {
		k := min(room, len(p))
		c.tail = append(c.tail, p[:k]...)
		p = p[k:]
	}
	for len(p) > 0 {
		k := copy(c.tail[c.next:], p)
		p = p[k:]
		c.next = (c.next + k) % c.tailMax
	}
	return n, nil
}

// Bytes returns the captured output and how many bytes were dropped from
// its middle. When anything was dropped, the head ends and the tail starts
// at a line boundary where there is one (a partial line could pass for a
// malformed phase output line), and a line between them says how much is
// missing.
func (c *capture) Bytes() ([]byte, int64) {
	tail := make([]byte, 0, len(c.tail))
	tail = append(tail, c.tail[c.next:]...)
	tail = append(tail, c.tail[:c.next]...)
	head := c.head
	if int64(len(head)+len(tail)) == c.total {
		return append(bytes.Clone(head), tail...), 0
	}
	if i := bytes.LastIndexByte(head, '\n'); i >= 0 {
		head = head[:i+1]
	}
	if i := bytes.IndexByte(tail, '\n'); i >= 0 && i+1 < len(tail) {
		tail = tail[i+1:]
	}
	dropped := c.total - int64(len(head)) - int64(len(tail))
	out := make([]byte, 0, len(head)+len(tail)+64)
	out = append(out, head...)
	if len(head) > 0 && head[len(head)-1] != '\n' {
		out = append(out, '\n')
	}
	out = fmt.Appendf(out, "[freezeframe: %d bytes of output dropped here]\n", dropped)
	out = append(out, tail...)
	return out, dropped
}
