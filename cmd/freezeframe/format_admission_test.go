package main

import (
	"strings"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

// A freeze that waited for its turn on the storage says so where the
// operator reads the backup's story; one admitted at once says nothing.
func TestDescribeQuiescedShowsTheAdmissionWait(t *testing.T) {
	ref := events.BackupRef{BackupID: "bk-1", Workload: events.Workload{Cluster: "dev", Namespace: "shop", Kind: events.KindDeployment, Name: "redis"}}
	for _, tt := range []struct {
		wait events.Duration
		want string
	}{
		{events.Duration(1500 * time.Millisecond), "; waited 1.5s for its turn on the storage"},
		{0, ""},
	} {
		ev, err := eventstest.NewEvent(&events.Quiesced{BackupRef: ref, QuiescedAt: time.Now(), FreezeDeadline: time.Now().Add(time.Minute), Blueprint: "redis-hooks", AdmissionWait: tt.wait})
		if err != nil {
			t.Fatal(err)
		}
		got := describe(ev)
		if tt.want != "" && !strings.HasSuffix(got, tt.want) || tt.want == "" && strings.Contains(got, "waited") {
			t.Errorf("describe(Quiesced, wait %v) = %q, want it to end with %q", tt.wait.Std(), got, tt.want)
		}
	}
}
