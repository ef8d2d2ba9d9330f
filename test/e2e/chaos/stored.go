package chaos

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// fetchStored reads every stored message of the event stream on subjects
// through a short-lived pull consumer, each call bounded by ctx. Not an ordered
// consumer (events.Client.List): its reset after a lost node retries without
// end, whatever the context says.
func fetchStored(ctx context.Context, js jetstream.JetStream, subjects []string) ([]jetstream.Msg, error) {
	cons, err := js.CreateConsumer(ctx, events.DefaultStream, jetstream.ConsumerConfig{
		FilterSubjects:    subjects,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: 30 * time.Second,
		Replicas:          1,
		MemoryStorage:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("read stored events: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = js.DeleteConsumer(dctx, events.DefaultStream, cons.CachedInfo().Name)
	}()
	want := int(cons.CachedInfo().NumPending)
	var out []jetstream.Msg
	for len(out) < want {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read stored events: %w", err)
		}
		batch, err := cons.Fetch(want-len(out), jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return nil, fmt.Errorf("read stored events: %w", err)
		}
		for m := range batch.Messages() {
			out = append(out, m)
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("read stored events: %w", err)
		}
	}
	return out, nil
}

// storedEvents decodes the backup's stored events, oldest first.
func (r *rowRun) storedEvents(ctx context.Context) ([]events.Event, error) {
	subjects, err := events.Filter{BackupID: r.id}.Subjects()
	if err != nil {
		return nil, err
	}
	msgs, err := fetchStored(ctx, r.js, subjects)
	if err != nil {
		return nil, err
	}
	var out []events.Event
	for _, m := range msgs {
		ev, err := events.Decode(m.Headers(), m.Data())
		if err != nil {
			return nil, fmt.Errorf("read stored events: %w", err)
		}
		out = append(out, ev)
	}
	return out, nil
}
