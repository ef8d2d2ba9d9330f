package lease_test

import (
	"sync"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

// Every stored write reports the lease as stored, in write order; a write
// that is refused reports nothing.
func TestOnStoredSeesEveryStoredWrite(t *testing.T) {
	_, s := newStore(t)
	h := acquire(t, s, newLease("b-1", workload("redis"), "hooker-1", time.Hour))
	var mu sync.Mutex
	var seen []lease.Lease
	h.OnStored(func(l lease.Lease) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, l)
	})
	if err := h.Renew(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := h.SetState(t.Context(), lease.StateFrozen); err != nil {
		t.Fatal(err)
	}
	if err := h.SetState(t.Context(), lease.StateFreezing); err == nil {
		t.Fatal("frozen → freezing was allowed")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[1].State != lease.StateFrozen || !seen[1].ValidUntil.Equal(h.ValidUntil()) || !seen[1].ValidUntil.After(seen[0].RenewedAt) {
		t.Fatalf("reported %+v, want the renewal then the frozen write, each with its ValidUntil", seen)
	}
}
