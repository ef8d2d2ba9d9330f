package snapshot

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// progressReporter tells the watchdogs, through the freeze record
// (events.FreezeBook, its one owner), that the snapshot of a frozen
// workload is progressing: a key per workload, rewritten every
// ProgressEvery while the Quiesced is handled and deleted after. If this
// replica dies or hangs, the key goes silent and the watchdogs resume the
// application long before the freeze cap. The key never extends the cap:
// the watchdog resumes at the lease's deadline whatever it says.
type progressReporter struct {
	book    *events.FreezeBook
	replica string
	every   time.Duration
	log     *slog.Logger
}

// start reports progress for q's workload until the returned stop is
// called. It never delays the handler: writes happen in the background, and
// a failure to write only means the watchdog may resume the application
// sooner.
func (p *progressReporter) start(ctx context.Context, q *events.Quiesced) (stop func()) {
	if p == nil || p.book == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(p.every)
		defer t.Stop()
		warned := false
		for {
			if err := p.book.ReportSnapshotProgress(ctx, q.BackupRef, p.replica); err != nil && ctx.Err() == nil && !warned {
				warned = true
				p.log.WarnContext(ctx, "cannot report snapshot progress to the watchdogs", "workload", q.Workload.String(), "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer dcancel()
		if err := p.book.ClearSnapshotProgress(dctx, q.Workload); err != nil {
			p.log.Debug("snapshot progress key not deleted", "workload", q.Workload.String(), "err", err)
		}
	}
}
