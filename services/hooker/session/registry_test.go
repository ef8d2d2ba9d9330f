package session

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/services/hooker/podexec/podexectest"
)

func TestRegistry(t *testing.T) {
	start := func(f *podexectest.DBClient) *Session {
		t.Helper()
		s, err := Start(t.Context(), f, testSpec())
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		return s
	}
	primary, replica, other := &podexectest.DBClient{}, &podexectest.DBClient{}, &podexectest.DBClient{}
	var r Registry // the zero value is ready
	r.Add("b1", start(primary))
	r.Add("b1", start(replica))
	r.Add("b2", start(other))

	if !r.Has("b1") || !r.Has("b2") || r.Has("b3") {
		t.Fatalf("Has: b1=%v b2=%v b3=%v, want true true false", r.Has("b1"), r.Has("b2"), r.Has("b3"))
	}
	if got := r.Backups(); !slices.Equal(got, []string{"b1", "b2"}) {
		t.Errorf("Backups = %v", got)
	}
	if got := len(r.Sessions("b1")); got != 2 {
		t.Errorf("Sessions(b1) has %d, want 2", got)
	}

	if err := r.Release(t.Context(), "b1"); err != nil {
		t.Fatalf("Release(b1): %v", err)
	}
	if !isClosed(primary.Done()) || !isClosed(replica.Done()) {
		t.Error("Release(b1) returned with a command still running")
	}
	if isClosed(other.Done()) {
		t.Error("Release(b1) ended b2's session")
	}
	if r.Has("b1") {
		t.Error("b1 still registered after its release")
	}
	// A duplicated resume does no harm.
	if err := r.Release(t.Context(), "b1"); err != nil {
		t.Errorf("second Release(b1): %v", err)
	}
	if err := r.Release(t.Context(), "never-seen"); err != nil {
		t.Errorf("Release of an unknown backup: %v", err)
	}

	// A lost session is reported at release, and forgotten all the same.
	crashing := &podexectest.DBClient{Crash: make(chan struct{})}
	lost := start(crashing)
	r.Add("b3", lost)
	close(crashing.Crash)
	waitClosed(t, lost.Lost(), 5*time.Second, "Lost")
	if err := r.Release(t.Context(), "b3"); !errors.Is(err, ErrLost) {
		t.Errorf("Release(b3) = %v, want ErrLost", err)
	}
	if r.Has("b3") {
		t.Error("b3 still registered after its release")
	}

	if err := r.ReleaseAll(t.Context()); err != nil {
		t.Fatalf("ReleaseAll: %v", err)
	}
	if !isClosed(other.Done()) || len(r.Backups()) != 0 {
		t.Errorf("ReleaseAll left sessions: %v", r.Backups())
	}
}
