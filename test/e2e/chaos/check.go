package chaos

import (
	"context"
	"fmt"
	"strings"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// labelBackupID is the label the snapshotter puts on every VolumeSnapshot it
// creates (services/snapshotter/snapshot.LabelBackupID; not imported, to keep
// the snapshotter's module out of this one).
const labelBackupID = "freezeframe.io/backup-id"

// snapshots lists the backup's VolumeSnapshots.
func (r *rowRun) snapshots(ctx context.Context) ([]snapv1.VolumeSnapshot, error) {
	list, err := r.e.cfg.Cluster.Snapshots.SnapshotV1().VolumeSnapshots(r.e.app.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labelBackupID + "=" + r.id})
	if err != nil {
		return nil, fmt.Errorf("list volumesnapshots: %w", err)
	}
	return list.Items, nil
}

// cutAt is when a snapshot was cut: its content's creationTime (nanoseconds),
// else the VolumeSnapshot's (seconds); false while neither is known.
func (r *rowRun) cutAt(ctx context.Context, vs *snapv1.VolumeSnapshot) (time.Time, bool) {
	if vs.Status == nil {
		return time.Time{}, false
	}
	if name := vs.Status.BoundVolumeSnapshotContentName; name != nil {
		c, err := r.e.cfg.Cluster.Snapshots.SnapshotV1().VolumeSnapshotContents().Get(ctx, *name, metav1.GetOptions{})
		if err == nil && c.Status != nil && c.Status.CreationTime != nil {
			return time.Unix(0, *c.Status.CreationTime), true
		}
	}
	if vs.Status.CreationTime != nil {
		return vs.Status.CreationTime.Time, true
	}
	return time.Time{}, false
}

// events lists the backup's stored events, retrying while NATS recovers.
func (r *rowRun) events(ctx context.Context) ([]events.Event, error) {
	var evs []events.Event
	var last error
	err := poll(ctx, 60*time.Second, 500*time.Millisecond, "the backup's events", func() (bool, error) {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		evs, last = r.storedEvents(lctx)
		return last == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w (last: %v)", err, last)
	}
	return evs, nil
}

// succeeded reports whether the backup's (first) Resumed says it succeeded.
func succeeded(evs []events.Event) bool {
	if r, ok := first[events.Resumed](evs); ok {
		return r.Succeeded
	}
	return false
}

func first[T any](evs []events.Event) (*T, bool) {
	for _, ev := range evs {
		if p, ok := any(ev.Payload).(*T); ok {
			return p, true
		}
	}
	return nil, false
}

// settleSnapshots waits until a failed backup has no snapshot left, or a
// successful one's snapshots show their cut (at most 20s; what remains is
// judged by check).
func (r *rowRun) settleSnapshots(ctx context.Context) error {
	evs, err := r.events(ctx)
	if err != nil {
		return err
	}
	ok := succeeded(evs)
	_ = poll(ctx, 20*time.Second, 200*time.Millisecond, "snapshots settled", func() (bool, error) {
		snaps, err := r.snapshots(ctx)
		if err != nil {
			return false, nil
		}
		if !ok {
			return len(snaps) == 0, nil
		}
		for i := range snaps {
			if _, known := r.cutAt(ctx, &snaps[i]); !known {
				return false, nil
			}
		}
		return true, nil
	})
	return nil
}

func (r *rowRun) slackPosts() int {
	n := 0
	for _, p := range r.e.cfg.Slack.Accepted() {
		if strings.Contains(p.Message.Text, r.id) {
			n++
		}
	}
	return n
}

// observe waits out the row's observation window: long enough after the last
// fault for a redelivery to happen (the notifier's AckWait after a notifier
// crash), and for a redelivered event to freeze and be resumed.
func (r *rowRun) observe(ctx context.Context) error {
	until := time.Now().Add(3 * time.Second)
	after := func(t time.Time, d time.Duration) {
		if !t.IsZero() && t.Add(d).After(until) {
			until = t.Add(d)
		}
	}
	after(r.lastFault, ackWait+2*time.Second)
	for _, k := range r.kills {
		if k.service == Notifier {
			after(k.at, notifierAckWait+3*time.Second)
		}
	}
	if r.republished {
		after(r.lastFault, r.e.bound()+2*time.Second)
	}
	// Not a wait for a condition: a window in which nothing more may happen.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(until)):
	}
	return nil
}

// check waits for the row to settle and checks every invariant. It returns the
// writer-observed longest freeze and the hook counts.
func (r *rowRun) check(ctx context.Context) (time.Duration, string, error) {
	if terminal, _ := r.ended(); terminal && !r.down[Notifier] {
		// A message may come late: after a notifier crash, its redelivery.
		_ = poll(ctx, notifierAckWait+15*time.Second, 100*time.Millisecond, "slack message", func() (bool, error) {
			return r.slackPosts() > 0, nil
		})
	}
	if err := r.observe(ctx); err != nil {
		return 0, "", err
	}
	if terminal, _ := r.ended(); terminal {
		if err := r.settleSnapshots(ctx); err != nil {
			return 0, "", err
		}
	}
	evs, err := r.events(ctx)
	if err != nil {
		return 0, "", err
	}
	var terminalAt time.Time
	var c events.Completion
	complete := false
	// Quiesced events by CloudEvent id: a redelivered copy keeps its id (only
	// its Nats-Msg-Id is new), a second freeze's would be new.
	quiesced := map[string]bool{}
	for _, ev := range evs {
		if events.IsTerminal(ev) && terminalAt.IsZero() {
			terminalAt = ev.Time()
		}
		if c.Observe(ev) {
			complete = true
		}
		if ev.Kind() == events.KindQuiesced {
			quiesced[ev.CloudEvent.ID()] = true
		}
	}

	// The request was answered, unless its scheduler was killed for good.
	select {
	case err := <-r.reqErr:
		if err != nil && !r.down[Scheduler] {
			r.violate("request: %v", err)
		}
	default:
		if !r.down[Scheduler] {
			r.violate("request still unanswered")
		}
	}

	// Every backup reaches a terminal event, and completes.
	switch {
	case r.down[Hooker]:
		r.na = append(r.na, "terminal (no hooker left)")
	case terminalAt.IsZero():
		r.violate("no terminal event (%v)", kinds(evs))
	case !complete && r.down[Snapshotter]:
		r.na = append(r.na, "complete (no snapshotter left)")
	case !complete:
		r.violate("not complete (%v)", kinds(evs))
	}

	// Writable within the cap, as the writer sees it.
	frozen, err := r.writerCheck(ctx)
	if err != nil {
		return 0, "", err
	}

	// Never two freezes.
	ms, err := Markers(r.e.markers)
	if err != nil {
		return 0, "", err
	}
	if len(quiesced) > 1 {
		r.violate("%d Quiesced", len(quiesced))
	}
	sawPost := false
	for _, m := range ms {
		switch {
		case m.Phase == PostHook:
			sawPost = true
		case sawPost:
			r.violate("frozen twice: pre-hook ran at %s after a post-hook", m.At.Format("15:04:05.000"))
		case !terminalAt.IsZero() && m.At.After(terminalAt):
			r.violate("frozen after the end: pre-hook ran at %s, backup ended %s", m.At.Format("15:04:05.000"), terminalAt.Format("15:04:05.000"))
		}
	}

	// No snapshot cut outside a freeze survives; none doubled. A backup
	// that never ended (no hooker left to resume it) keeps what it cut in
	// its freeze: nothing says yet whether it succeeds.
	neverEnded := r.down[Hooker] && terminalAt.IsZero()
	if neverEnded {
		r.na = append(r.na, "snapshot survival (the backup never ended)")
	}
	if err := r.snapshotCheck(ctx, evs, !neverEnded); err != nil {
		return 0, "", err
	}

	// One Slack message per backup.
	if r.down[Notifier] {
		r.na = append(r.na, "slack (no notifier left)")
	} else if n := r.slackPosts(); n != 1 && !terminalAt.IsZero() {
		r.violate("%d Slack messages", n)
	}

	// Redelivered events change nothing.
	if r.republished {
		if n := countPhase(ms, PreHook) - r.baseline.pre; n > 0 {
			r.violate("redelivered %s froze again (%d pre-hook runs)", r.row.Redeliver, n)
		}
		snaps, err := r.snapshots(ctx)
		if err != nil {
			return 0, "", err
		}
		if n := len(snaps) - r.baseline.snapshots; n > 0 {
			r.violate("redelivered %s made %d new snapshots", r.row.Redeliver, n)
		}
		if _, held := r.proxy.Held(); held > r.baseline.held {
			r.violate("redelivered %s made %d snapshot creates (held by the proxy)", r.row.Redeliver, held-r.baseline.held)
		}
	}
	return frozen, hooksSummary(ms), nil
}

// writerCheck checks that the application takes writes again and that no gap
// between two acknowledged writes exceeded the bound; it returns the longest.
func (r *rowRun) writerCheck(ctx context.Context) (time.Duration, error) {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.writer.WaitAcked(wctx, r.writer.Acked()+20); err != nil {
		r.violate("not writable at the end: %v", err)
	}
	writes, werr := r.writer.Stop(2 * time.Second)
	stopped := time.Now()
	r.writer = nil
	if werr != nil {
		r.violate("writer: %v", werr)
	}
	var longest time.Duration
	var at, last time.Time
	for _, w := range writes {
		end := w.Acked
		if end.IsZero() {
			end = stopped
		}
		if !last.IsZero() && end.Sub(last) > longest {
			longest, at = end.Sub(last), last
		}
		if w.Acked.IsZero() {
			break
		}
		last = w.Acked
	}
	switch {
	case longest <= r.e.bound():
	case r.down[Hooker] && !r.unpausedAt.IsZero():
		r.na = append(r.na, "writable (no hooker left; the harness unpaused)")
	case !r.apiBackAt.IsZero() && at.Before(r.apiBackAt) && !at.Add(longest).After(r.apiBackAt.Add(apiGrace)):
		// A KubeExec post-hook is an exec through the API server: while it
		// is down, nothing can run one. The bound is then the API's return.
		r.na = append(r.na, fmt.Sprintf("writable within the cap (the API server was down until %s; writable %s after)",
			r.apiBackAt.Format("15:04:05.000"), at.Add(longest).Sub(r.apiBackAt).Round(time.Millisecond)))
	default:
		r.violate("frozen %s from %s (cap %s, bound %s)", longest.Round(time.Millisecond), at.Format("15:04:05.000"), r.e.cfg.MaxFreeze, r.e.bound())
	}
	return longest, nil
}

// snapshotCheck: a backup that did not resume with Succeeded=true keeps no
// snapshot; a successful one keeps one per PVC, each cut inside its freeze.
func (r *rowRun) snapshotCheck(ctx context.Context, evs []events.Event, ended bool) error {
	snaps, err := r.snapshots(ctx)
	if err != nil {
		return err
	}
	perPVC := map[string]int{}
	for _, vs := range snaps {
		if src := vs.Spec.Source.PersistentVolumeClaimName; src != nil {
			perPVC[*src]++
		}
	}
	for pvc, n := range perPVC {
		if n > 1 {
			r.violate("%d snapshots of %s", n, pvc)
		}
	}
	if !ended {
		return nil
	}
	if !succeeded(evs) {
		for i := range snaps {
			cut, _ := r.cutAt(ctx, &snaps[i])
			r.violate("snapshot %s of a backup that did not succeed survives (cut %s)", snaps[i].Name, cut.Format("15:04:05.000"))
		}
		return nil
	}
	q, okQ := first[events.Quiesced](evs)
	res, _ := first[events.Resumed](evs)
	if !okQ {
		r.violate("succeeded without Quiesced")
		return nil
	}
	if len(snaps) == 0 {
		r.violate("succeeded, but no snapshot")
	}
	from, until := q.QuiescedAt, q.QuiescedAt.Add(res.FrozenFor.Std())
	for i := range snaps {
		cut, ok := r.cutAt(ctx, &snaps[i])
		if !ok {
			r.violate("snapshot %s: cut never recorded", snaps[i].Name)
			continue
		}
		if cut.Before(from) || cut.After(until) {
			r.violate("snapshot %s cut %s outside the freeze %s..%s", snaps[i].Name, cut.Format("15:04:05.000"), from.Format("15:04:05.000"), until.Format("15:04:05.000"))
		}
	}
	return nil
}

// kinds lists the kinds of evs, a run of one kind as "kind×n".
func kinds(evs []events.Event) string {
	ks := make([]events.Kind, len(evs))
	for i, ev := range evs {
		ks[i] = ev.Kind()
	}
	return compactKinds(ks)
}

func compactKinds(ks []events.Kind) string {
	var out []string
	for i := 0; i < len(ks); {
		j := i
		for j < len(ks) && ks[j] == ks[i] {
			j++
		}
		if j-i > 1 {
			out = append(out, fmt.Sprintf("%s×%d", ks[i], j-i))
		} else {
			out = append(out, string(ks[i]))
		}
		i = j
	}
	return "[" + strings.Join(out, " ") + "]"
}
