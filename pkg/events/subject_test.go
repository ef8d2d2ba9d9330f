package events_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/freezeframe/freezeframe/pkg/events"
)

func TestParseSubject(t *testing.T) {
	sts := events.Workload{Cluster: "prod", Namespace: "db", Kind: events.KindStatefulSet, Name: "pg"}
	tests := []struct {
		subject string
		kind    events.Kind
		ref     events.BackupRef
	}{
		{"freezeframe.backup.quiesced.dev.shop.deployment.redis_cache.bk-1", events.KindQuiesced, events.BackupRef{BackupID: "bk-1", Workload: redis}},
		{"freezeframe.backup.unlock-requested.prod.db.statefulset.pg.bk_2", events.KindUnlockRequested, events.BackupRef{BackupID: "bk_2", Workload: sts}},
		// Payloads may spell the kind short; Subject lower-cases it as given.
		{"freezeframe.backup.failed.prod.db.sts.pg.b", events.KindFailed, events.BackupRef{BackupID: "b", Workload: sts}},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			k, ref, err := events.ParseSubject(tt.subject)
			if err != nil {
				t.Fatal(err)
			}
			if k != tt.kind || ref != tt.ref {
				t.Fatalf("got %s %+v, want %s %+v", k, ref, tt.kind, tt.ref)
			}
		})
	}
	// What Subject writes, ParseSubject reads back, for every kind.
	for _, k := range events.Kinds() {
		ref := events.BackupRef{BackupID: "bk-rt", Workload: redis}
		gotK, gotRef, err := events.ParseSubject(events.Subject(k, ref))
		if err != nil || gotK != k || gotRef != ref {
			t.Errorf("round trip of %s: %s %+v %v", events.Subject(k, ref), gotK, gotRef, err)
		}
	}
	bad := []string{
		"",
		"freezeframe.backup",
		"freezeframe.backup.",
		"other.backup.quiesced.dev.shop.deployment.redis.bk-1",
		"freezeframe.backup.quiesced.dev.shop.deployment.redis",            // five tokens
		"freezeframe.backup.quiesced.dev.shop.deployment.redis.bk-1.extra", // seven
		"freezeframe.backup.exploded.dev.shop.deployment.redis.bk-1",       // event kind
		"freezeframe.backup.quiesced.dev.shop.cronjob.redis.bk-1",          // workload kind
		"freezeframe.backup.quiesced.dev.shop.Deployment.redis.bk-1",       // not as Subject writes it
		"freezeframe.backup.quiesced.Dev.shop.deployment.redis.bk-1",       // cluster
		"freezeframe.backup.quiesced.dev.sh_op.deployment.redis.bk-1",      // namespace
		"freezeframe.backup.quiesced.dev.shop.deployment.re__dis.bk-1",     // name
		"freezeframe.backup.quiesced.dev.shop.deployment.redis.-bk",        // backup id
		"freezeframe.backup.quiesced.dev.shop.deployment.redis.*",
		"freezeframe.backup.quiesced.dev.shop.deployment..bk-1",
		"freezeframe.backup.quiesced.dev.shop.deployment.redis." + strings.Repeat("x", 129),
	}
	for _, s := range bad {
		k, ref, err := events.ParseSubject(s)
		if !errors.Is(err, events.ErrBadSubject) {
			t.Errorf("ParseSubject(%q) = %v, want ErrBadSubject", s, err)
		}
		if k != "" || ref != (events.BackupRef{}) {
			t.Errorf("ParseSubject(%q) returned %q %+v with its error", s, k, ref)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("ParseSubject(%q): error of %d bytes quotes too much", s, len(err.Error()))
		}
	}
}
