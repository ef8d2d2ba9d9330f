package service_test

import (
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/service"
)

// Four services starting at once on a fresh 3-node cluster all open the
// bus: JetStream's timeouts while the cluster forms are waited out, not
// fatal (they used to make every service exit).
func TestServicesStartTogetherOnAFreshCluster(t *testing.T) {
	nodes := eventstest.NewCluster(t, 3)
	c := service.Common{NATS: service.NATS{URL: strings.Join(eventstest.ClientURLs(nodes), ","), Stream: "FREEZEFRAME", StreamReplicas: 3}}
	log := slog.New(slog.DiscardHandler)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i, name := range []string{"scheduler", "hooker", "snapshotter", "notifier"} {
		wg.Go(func() {
			bus, err := service.OpenBus(t.Context(), c, name, log)
			if err == nil {
				if bus.StreamMaxAge <= 0 {
					t.Errorf("%s: stream max age %s, want the default", name, bus.StreamMaxAge)
				}
				bus.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("service %d: %v", i, err)
		}
	}
}
