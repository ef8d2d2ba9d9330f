package eventstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// freezeBuckets opens the freeze record's buckets, creating them as
// `freezeframe setup` does when absent.
func freezeBuckets(t testing.TB, js jetstream.JetStream) (live, ended jetstream.KeyValue) {
	t.Helper()
	bucket := func(cfg jetstream.KeyValueConfig) jetstream.KeyValue {
		kv, err := js.KeyValue(t.Context(), cfg.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(t.Context(), cfg)
		}
		if err != nil {
			t.Fatal(err)
		}
		return kv
	}
	return bucket(events.FreezesBucketConfig("", 1)), bucket(events.BackupsBucketConfig(1, 0))
}

// Freeze records ref as frozen, as the hooker does before it publishes
// Quiesced, for tests of the services that read the freeze record without
// a hooker. It returns the freeze's epoch, for Quiesced.FreezeEpoch.
func Freeze(t testing.TB, js jetstream.JetStream, ref events.BackupRef) uint64 {
	t.Helper()
	live, _ := freezeBuckets(t, js)
	k, err := events.FreezeKey(ref.Workload)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	f := events.Freeze{BackupID: ref.BackupID, Workload: ref.Workload, Holder: "test", State: events.FreezeFreezing, AcquiredAt: now, Deadline: now.Add(time.Hour), RenewedAt: now}
	b, _ := json.Marshal(f)
	// An earlier freeze of the workload may be ending right now.
	var rev uint64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if rev, err = live.Create(t.Context(), k, b); err == nil {
			break
		}
		if e, gerr := live.Get(t.Context(), k); gerr == nil {
			var cur events.Freeze
			if json.Unmarshal(e.Value(), &cur) == nil && cur.BackupID == ref.BackupID {
				return cur.Epoch // frozen already: a second Quiesced of one backup
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("freeze %s: %v (end the workload's earlier freeze first)", ref.BackupID, err)
		}
	}
	f.State, f.Epoch = events.FreezeFrozen, rev
	b, _ = json.Marshal(f)
	if _, err := live.Update(t.Context(), k, b, rev); err != nil {
		t.Fatal(err)
	}
	return rev
}

// EndFreeze ends a freeze as the hooker does: its end recorded, then its
// live record deleted.
func EndFreeze(t testing.TB, js jetstream.JetStream, end events.FreezeEnd) {
	t.Helper()
	if err := endFreeze(t.Context(), js, end); err != nil {
		t.Fatal(err)
	}
}

func endFreeze(ctx context.Context, js jetstream.JetStream, end events.FreezeEnd) error {
	live, err := js.KeyValue(ctx, events.FreezesBucket)
	if err != nil {
		return err
	}
	ended, err := js.KeyValue(ctx, events.BackupsBucket)
	if err != nil {
		return err
	}
	ref := events.BackupRef{BackupID: end.BackupID, Workload: end.Workload}
	ek, err := events.FreezeEndKey(ref)
	if err != nil {
		return err
	}
	if end.EndedAt.IsZero() {
		end.EndedAt = time.Now().UTC()
	}
	b, err := json.Marshal(end)
	if err != nil {
		return err
	}
	if _, err := ended.Create(ctx, ek, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("record end of %s: %w", end.BackupID, err)
	}
	k, err := events.FreezeKey(end.Workload)
	if err != nil {
		return err
	}
	e, err := live.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil
	}
	if err != nil {
		return err
	}
	var f events.Freeze
	if json.Unmarshal(e.Value(), &f) == nil && f.BackupID == end.BackupID {
		return live.Delete(ctx, k, jetstream.LastRevision(e.Revision()))
	}
	return nil
}

// RecordEnd records a freeze's end without deleting its live record: the
// moment between the two, as a test wants to freeze it.
func RecordEnd(t testing.TB, js jetstream.JetStream, end events.FreezeEnd) {
	t.Helper()
	_, ended := freezeBuckets(t, js)
	k, err := events.FreezeEndKey(events.BackupRef{BackupID: end.BackupID, Workload: end.Workload})
	if err != nil {
		t.Fatal(err)
	}
	if end.EndedAt.IsZero() {
		end.EndedAt = time.Now().UTC()
	}
	b, _ := json.Marshal(end)
	if _, err := ended.Create(t.Context(), k, b); err != nil {
		t.Fatal(err)
	}
}

// StandInHooker ends freezes as the hooker does once it resumed, for tests
// of the services that read the freeze record without a hooker: a
// Snapshotted ends its freeze with success, a BackupFailed with a resume
// pending ends it failed. It stops with ctx.
func StandInHooker(ctx context.Context, t testing.TB, c *events.Client, js jetstream.JetStream) {
	t.Helper()
	freezeBuckets(t, js)
	if _, err := events.EnsureStream(ctx, js, events.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	f := events.Filter{Kinds: []events.Kind{events.KindSnapshotted, events.KindFailed}}
	go func() {
		for ev, err := range c.Subscribe(ctx, f, events.SubscribeOptions{FromStart: true}) {
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				continue
			}
			ref := ev.Payload.Ref()
			end := events.FreezeEnd{BackupID: ref.BackupID, Workload: ref.Workload, Resumed: true}
			switch p := ev.Payload.(type) {
			case *events.Snapshotted:
				end.Succeeded, end.Reason = true, events.ResumeAfterSnapshot
			case *events.BackupFailed:
				if !p.ResumePending {
					continue
				}
				end.Reason = events.ResumeAfterFailure
			}
			if err := endFreeze(ctx, js, end); err != nil && ctx.Err() == nil {
				t.Errorf("stand-in hooker: %v", err)
			}
		}
	}()
}
