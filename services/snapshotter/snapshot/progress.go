package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// progressReporter tells the watchdogs, through the freeze lease bucket,
// that the snapshot of a frozen workload is progressing: a key per
// workload, rewritten every ProgressEvery while the Quiesced is handled and
// deleted after. If this replica dies or hangs, the key goes silent and the
// watchdogs resume the application long before the freeze cap. The key
// never extends the cap: the watchdog resumes at the lease's deadline
// whatever it says.
type progressReporter struct {
	js      jetstream.JetStream
	replica string
	every   time.Duration
	log     *slog.Logger

	mu sync.Mutex
	kv jetstream.KeyValue
}

// bucket opens the lease bucket on first use: the hooker creates it, and
// may start after this service.
func (p *progressReporter) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kv != nil {
		return p.kv, nil
	}
	kv, err := p.js.KeyValue(ctx, events.FreezesBucket)
	if err != nil {
		return nil, err
	}
	p.kv = kv
	return kv, nil
}

// start reports progress for q's workload until the returned stop is
// called. It never delays the handler: writes happen in the background, and
// a failure to write only means the watchdog may resume the application
// sooner.
func (p *progressReporter) start(ctx context.Context, q *events.Quiesced) (stop func()) {
	if p == nil || p.js == nil {
		return func() {}
	}
	key, err := events.SnapshotProgressKey(q.Workload)
	if err != nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(p.every)
		defer t.Stop()
		warned := false
		for {
			if err := p.put(ctx, key, q.BackupID); err != nil && ctx.Err() == nil && !warned {
				warned = true
				p.log.WarnContext(ctx, "cannot report snapshot progress to the watchdogs", "key", key, "err", err)
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
		if kv, err := p.bucket(dctx); err == nil {
			if err := kv.Delete(dctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				p.log.Debug("snapshot progress key not deleted", "key", key, "err", err)
			}
		}
	}
}

func (p *progressReporter) put(ctx context.Context, key, backupID string) error {
	kv, err := p.bucket(ctx)
	if err != nil {
		return err
	}
	v, err := json.Marshal(events.SnapshotProgress{BackupID: backupID, Replica: p.replica, RenewedAt: time.Now().UTC()})
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, key, v)
	return err
}
