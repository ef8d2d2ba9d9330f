package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

// CheckFrozen answers the snapshotter's question at each point of a
// freeze's life, as the hooker writes the record.
func TestCheckFrozenFollowsTheRecord(t *testing.T) {
	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	ctx := t.Context()
	live, err := js.KeyValue(ctx, events.FreezesBucket) // set up by the server
	if err != nil {
		t.Fatal(err)
	}
	ref := events.BackupRef{BackupID: "bk-1", Workload: events.Workload{Cluster: "c", Namespace: "shop", Kind: "deploy", Name: "db"}}
	key, err := events.FreezeKey(ref.Workload)
	if err != nil {
		t.Fatal(err)
	}
	f := events.Freeze{BackupID: ref.BackupID, Workload: ref.Workload, Holder: "h", State: events.FreezeFreezing, AcquiredAt: time.Now(), Deadline: time.Now().Add(time.Minute)}
	put := func(rev uint64) uint64 {
		t.Helper()
		b, _ := json.Marshal(f)
		var n uint64
		var err error
		if rev == 0 {
			n, err = live.Create(ctx, key, b)
		} else {
			n, err = live.Update(ctx, key, b, rev)
		}
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	book := events.NewFreezeBook(js, "")
	check := func(epoch uint64, wantWhy string) {
		t.Helper()
		err := book.CheckFrozen(ctx, ref, epoch)
		switch {
		case wantWhy == "" && err != nil:
			t.Fatalf("CheckFrozen(epoch %d) = %v, want frozen", epoch, err)
		case wantWhy != "" && (!errors.Is(err, events.ErrNotFrozen) || !strings.Contains(err.Error(), wantWhy)):
			t.Fatalf("CheckFrozen(epoch %d) = %v, want not frozen: %s", epoch, err, wantWhy)
		}
	}
	check(1, "no freeze holds the workload")
	epoch := put(0) // freezing, as created: a Quiesced of this epoch may be out
	check(epoch, "")
	check(epoch+7, "another freeze")
	f.State, f.Epoch = events.FreezeFrozen, epoch
	rev := put(epoch)
	check(epoch, "")
	check(0, "")
	check(epoch+7, "another freeze")
	// A holder whose renewals are overdue, or past its cap, may resume
	// without writing first: the record stops vouching at ValidUntil, and
	// says the freeze still holds the workload.
	f.ValidUntil = time.Now().Add(-time.Millisecond)
	rev = put(rev)
	check(epoch, "vouches for it only until")
	var nf *events.NotFrozenError
	if err := book.CheckFrozen(ctx, ref, epoch); !errors.As(err, &nf) || !nf.Held {
		t.Fatalf("CheckFrozen past ValidUntil = %#v, want a NotFrozenError with Held", err)
	}
	f.ValidUntil = time.Now().Add(time.Minute)
	rev = put(rev)
	check(epoch, "")
	f.State = events.FreezeResuming
	put(rev)
	check(epoch, "resuming")
	eventstest.EndFreeze(t, js, events.FreezeEnd{BackupID: ref.BackupID, Workload: ref.Workload, Reason: events.ResumeStaleLock, Resumed: true})
	check(epoch, "ended (stale-lock)")
	if end, err := book.Ended(ctx, ref); err != nil || end.Reason != events.ResumeStaleLock {
		t.Fatalf("Ended = %+v, %v", end, err)
	}
	other := ref
	other.BackupID = "bk-2"
	if _, err := book.Ended(ctx, other); !errors.Is(err, events.ErrNotEnded) {
		t.Fatalf("Ended of a backup that never froze = %v, want ErrNotEnded", err)
	}
}
