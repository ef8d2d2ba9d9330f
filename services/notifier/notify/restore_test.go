package notify_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/services/notifier/slack/slacktest"
)

// A restore's end is posted once, to the destination its backup's namespace
// routes to: a success only where every outcome is wanted, a failure
// everywhere; neither is counted as a backup.
func TestSlackRestoreMessages(t *testing.T) {
	srv := eventstest.NewServer(t)
	_, js := srv.JetStream()
	fake := slacktest.NewServer(t, token)
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	now := time.Now().UTC()
	shop, pay := in("shop", "bk-r1"), in("payments", "bk-r2")
	publish(t, eventstest.NewPipeline(js),
		&events.RestoreRequested{BackupRef: shop, RestoreID: "rs-ok", TargetNamespace: "shop-copy",
			Volumes: []events.RestoreVolume{{PVC: "data-db-0", Snapshot: "ff-1-data-db-0", Claim: "data-db-0"}}},
		&events.Restored{BackupRef: shop, RestoreID: "rs-ok", TargetNamespace: "shop-copy", Consistent: true, Took: events.Duration(1500 * time.Millisecond),
			Claims: []events.RestoredClaim{{Namespace: "shop-copy", Name: "data-db-0", PVC: "data-db-0", Snapshot: "ff-1-data-db-0", Volume: "pvc-123", Capacity: "1Gi", BoundAt: now}}},
		&events.RestoreFailed{BackupRef: pay, RestoreID: "rs-bad", TargetNamespace: "payments", Reason: "restore backup bk-r2: backup is not consistent"},
		&events.Restored{BackupRef: in("payments", "bk-r3"), RestoreID: "rs-quiet", TargetNamespace: "payments",
			Claims: []events.RestoredClaim{{Namespace: "payments", Name: "data-r", PVC: "data", Snapshot: "s", Volume: "pv"}}},
	)
	run(t, js, replica(t, js, fake, log))
	waitPosts(t, fake, 2)
	// Settled means handled, and a handler posts before it returns: a third
	// post would be in by now.
	waitSettled(t, js, 3)

	posts := fake.Accepted()
	if len(posts) != 2 {
		t.Fatalf("%d posts, want 2 (the success in shop, the failure in payments; not the success in payments, whose route takes failures only)", len(posts))
	}
	byDest := map[string]string{}
	for _, p := range posts {
		blocks, _ := json.Marshal(p.Message.Blocks)
		byDest[p.Destination] = p.Message.Text + "\n" + string(blocks)
	}
	for dest, want := range map[string][]string{
		"webhook":   {"Restore succeeded", "bk-r1", "shop-copy", "1 claim(s) bound", "1.5s", "consistent", "rs-ok", "`data-db-0` bound to `pvc-123` (1Gi)"},
		"#payments": {"Restore failed", "bk-r2", "not consistent", "rs-bad"},
	} {
		got, ok := byDest[dest]
		if !ok {
			t.Errorf("nothing posted to %s: %v", dest, byDest)
			continue
		}
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: message %q lacks %q", dest, got, w)
			}
		}
	}
}
