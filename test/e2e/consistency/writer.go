package consistency

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Write is one numbered write: when the writer sent it, and when the server acknowledged
// it (zero if it never did).
type Write struct {
	N      int
	Issued time.Time
	Acked  time.Time
}

// Writer writes SET <prefix>:<n> <n> for n = 1, 2, ... on one connection, one at a time:
// write n is sent only after write n-1 was acknowledged, which is what lets Check reason
// about order. Every write's times are recorded.
type Writer struct {
	prefix string
	every  time.Duration
	conn   *Redis

	mu     sync.Mutex
	writes []Write
	err    error
	acked  chan struct{} // signalled (coalesced) on every ack
	stop   chan struct{}
	done   chan struct{}
}

// StartRedisWriter connects to the Redis server at addr and starts writing, pausing every
// between writes (0: as fast as the server acknowledges).
func StartRedisWriter(ctx context.Context, addr, password, prefix string, every time.Duration) (*Writer, error) {
	conn, err := DialRedis(ctx, addr, password)
	if err != nil {
		return nil, err
	}
	w := &Writer{prefix: prefix, every: every, conn: conn,
		acked: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w, nil
}

func (w *Writer) run() {
	defer close(w.done)
	for n := 1; ; n++ {
		select {
		case <-w.stop:
			return
		default:
		}
		issued := time.Now()
		w.mu.Lock()
		w.writes = append(w.writes, Write{N: n, Issued: issued})
		w.mu.Unlock()
		reply, err := w.conn.Do("SET", w.prefix+":"+strconv.Itoa(n), strconv.Itoa(n))
		acked := time.Now()
		if err == nil && reply != "OK" {
			err = fmt.Errorf("SET %s:%d: reply %v", w.prefix, n, reply)
		}
		w.mu.Lock()
		if err != nil {
			select {
			case <-w.stop:
				// Cut short by Stop: that write's outcome is unknown, not a failure.
			default:
				w.err = err
			}
			w.mu.Unlock()
			return
		}
		w.writes[n-1].Acked = acked
		w.mu.Unlock()
		select {
		case w.acked <- struct{}{}:
		default:
		}
		if w.every > 0 {
			select {
			case <-w.stop:
				return
			case <-time.After(w.every):
			}
		}
	}
}

// Acked returns how many writes were acknowledged so far.
func (w *Writer) Acked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.writes)
	if n > 0 && w.writes[n-1].Acked.IsZero() {
		n--
	}
	return n
}

// Err returns the error that stopped the writer, if any.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// WaitAcked waits until n writes were acknowledged.
func (w *Writer) WaitAcked(ctx context.Context, n int) error {
	for {
		if w.Acked() >= n {
			return nil
		}
		if err := w.Err(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d acknowledged writes (have %d): %w", n, w.Acked(), ctx.Err())
		case <-w.done:
			if w.Acked() >= n {
				return nil
			}
			return errors.New("writer stopped")
		case <-w.acked:
		}
	}
}

// WaitAckedAfter waits until a write is acknowledged at or after t, and returns it.
func (w *Writer) WaitAckedAfter(ctx context.Context, t time.Time) (Write, error) {
	for {
		w.mu.Lock()
		for i := len(w.writes) - 1; i >= 0; i-- {
			if a := w.writes[i].Acked; !a.IsZero() {
				if !a.Before(t) {
					wr := w.writes[i]
					w.mu.Unlock()
					return wr, nil
				}
				break
			}
		}
		err := w.err
		w.mu.Unlock()
		if err != nil {
			return Write{}, err
		}
		select {
		case <-ctx.Done():
			return Write{}, fmt.Errorf("wait for a write acknowledged after %s: %w", t.Format("15:04:05.000"), ctx.Err())
		case <-w.done:
			return Write{}, errors.New("writer stopped")
		case <-w.acked:
		}
	}
}

// Writes returns a copy of the writes so far.
func (w *Writer) Writes() []Write {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Write(nil), w.writes...)
}

// Stop stops writing once the write in flight is acknowledged (at most wait; after that
// the connection is closed and that write stays unacknowledged), and returns every write.
func (w *Writer) Stop(wait time.Duration) ([]Write, error) {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	select {
	case <-w.done:
	case <-time.After(wait):
		w.conn.Close()
		<-w.done
	}
	w.conn.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Write(nil), w.writes...), w.err
}
