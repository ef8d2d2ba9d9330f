package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The bus resources freezeframe needs, defined once: the event stream, the
// durable consumers the services share, and the key-value buckets. One
// step with admin rights creates them ([Setup], run by `freezeframe
// setup`, `freezeframe up` and the chart's install job); the services only
// bind to them ([BindStream], [BindKeyValue], [NewConsumer]), so that no
// service needs the right to create, change or delete a stream.

// ErrNotSetUp says that a stream, consumer or bucket freezeframe needs does
// not exist: `freezeframe setup` has not run against this NATS (or ran with
// another stream name). A service waits for it rather than exiting.
var ErrNotSetUp = errors.New("not set up: run `freezeframe setup` with admin credentials")

// LedgerBucket is the notifier's default bucket of posted notifications.
const LedgerBucket = "freezeframe-notified"

// HookerReplicaConsumerPrefix starts the name of each hooker replica's own
// consumer of resume triggers ("hooker-<replica>"). Only the replica knows
// its name, so it creates that consumer itself (see [Permissions]).
const HookerReplicaConsumerPrefix = "hooker-"

// Durable is a consumer shared by the replicas of one service: its name,
// who reads it, and the event kinds it holds.
type Durable struct {
	Name  string
	Role  Role
	Kinds []Kind
}

// The shared durables' names.
const (
	DurableHooker             = "hooker"
	DurableSnapshotter        = "snapshotter"
	DurableSnapshotterReady   = "snapshotter-ready"
	DurableSnapshotterRestore = "snapshotter-restore"
	DurableNotifier           = "notifier"
)

// Durables lists the shared durable consumers.
func Durables() []Durable {
	return []Durable{
		{Name: DurableHooker, Role: RoleHooker, Kinds: []Kind{KindRequested}},
		{Name: DurableSnapshotter, Role: RoleSnapshotter, Kinds: []Kind{KindQuiesced}},
		{Name: DurableSnapshotterReady, Role: RoleSnapshotter, Kinds: []Kind{KindSnapshotted}},
		{Name: DurableSnapshotterRestore, Role: RoleSnapshotter, Kinds: []Kind{KindRestoreRequested}},
		// SnapshotReady only to count a backup complete.
		{Name: DurableNotifier, Role: RoleNotifier, Kinds: []Kind{KindResumed, KindFailed, KindSnapshotReady, KindRestored, KindRestoreFailed}},
	}
}

// DurableNamed returns the shared durable called name.
func DurableNamed(name string) (Durable, bool) {
	i := slices.IndexFunc(Durables(), func(d Durable) bool { return d.Name == name })
	if i < 0 {
		return Durable{}, false
	}
	return Durables()[i], true
}

// Consumer returns the consumer configuration of d with the library's
// defaults; services adjust AckWait, MaxDeliver and Concurrency.
func (d Durable) Consumer(stream string) ConsumerConfig {
	return ConsumerConfig{Stream: stream, Durable: d.Name, Kinds: slices.Clone(d.Kinds)}
}

// FreezesBucketConfig is the bucket of live freezes (see [FreezesBucket]).
func FreezesBucketConfig(name string, replicas int) jetstream.KeyValueConfig {
	if name == "" {
		name = FreezesBucket
	}
	return jetstream.KeyValueConfig{
		Bucket:      name,
		Description: "freezeframe freeze leases: one key per frozen workload",
		History:     1,
		Replicas:    max(replicas, 1),
		Storage:     jetstream.FileStorage,
	}
}

// BackupsBucketConfig is the bucket of ended freezes (see [BackupsBucket]),
// each kept for ttl (0: for ever): as long as the stream keeps the requests
// that a replay could freeze again.
func BackupsBucketConfig(replicas int, ttl time.Duration) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      BackupsBucket,
		Description: "freezeframe ended freezes: one key per backup, so that none is frozen twice",
		History:     1,
		TTL:         max(ttl, 0),
		Replicas:    max(replicas, 1),
		Storage:     jetstream.FileStorage,
	}
}

// LedgerBucketConfig is the notifier's bucket of posted notifications.
// Entries outlive the events they record (streamMaxAge), so a replay of
// the whole stream finds them.
func LedgerBucketConfig(name string, replicas int, streamMaxAge time.Duration) jetstream.KeyValueConfig {
	if name == "" {
		name = LedgerBucket
	}
	if streamMaxAge <= 0 {
		streamMaxAge = 30 * 24 * time.Hour
	}
	return jetstream.KeyValueConfig{
		Bucket:      name,
		Description: "freezeframe notifier: events posted to each destination",
		History:     1,
		TTL:         streamMaxAge + 24*time.Hour,
		Replicas:    max(replicas, 1),
		Storage:     jetstream.FileStorage,
	}
}

// SetupConfig is everything Setup creates.
type SetupConfig struct {
	Stream StreamConfig
	// Consumers are the shared durables with the services' settings;
	// default: Durables() with the library's defaults.
	Consumers []ConsumerConfig
	// FreezesBucket and LedgerBucket name the hooker's and the notifier's
	// buckets when they are not the defaults.
	FreezesBucket, LedgerBucket string
}

// Setup creates or updates the stream (keeping the limits an operator set
// on it, see EnsureStream), the shared durables and the buckets, these
// sized by the stream's own MaxAge. It is idempotent; report, when not nil,
// is told each thing done.
func Setup(ctx context.Context, js jetstream.JetStream, cfg SetupConfig, report func(string)) error {
	if report == nil {
		report = func(string) {}
	}
	cfg.Stream = cfg.Stream.withDefaults()
	_, lookupErr := js.Stream(ctx, cfg.Stream.Name)
	s, err := EnsureStream(ctx, js, cfg.Stream)
	if err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	info := s.CachedInfo().Config
	verb := "created"
	if lookupErr == nil {
		verb = "kept, its limits unchanged"
	}
	report(fmt.Sprintf("stream %s %s: subjects %v, max age %s, max bytes %d, max msgs %d, replicas %d, duplicates window %s",
		info.Name, verb, info.Subjects, info.MaxAge, info.MaxBytes, info.MaxMsgs, info.Replicas, info.Duplicates))
	consumers := cfg.Consumers
	if consumers == nil {
		for _, d := range Durables() {
			consumers = append(consumers, d.Consumer(cfg.Stream.Name))
		}
	}
	for _, c := range consumers {
		c.Stream = cfg.Stream.Name
		if err := EnsureConsumer(ctx, js, c); err != nil {
			return fmt.Errorf("set up: %w", err)
		}
		c = c.withDefaults()
		report(fmt.Sprintf("consumer %s: kinds %v, ack wait %s, max deliver %d, max ack pending %d", c.Durable, c.Kinds, c.AckWait, c.MaxDeliver, c.Concurrency))
	}
	// Ends of freezes are kept as long as the stream keeps the requests
	// that a replay could freeze again (0: for ever).
	buckets := []jetstream.KeyValueConfig{
		FreezesBucketConfig(cfg.FreezesBucket, info.Replicas),
		BackupsBucketConfig(info.Replicas, info.MaxAge),
		LedgerBucketConfig(cfg.LedgerBucket, info.Replicas, info.MaxAge),
	}
	for _, b := range buckets {
		if _, err := js.CreateOrUpdateKeyValue(ctx, b); err != nil {
			return fmt.Errorf("set up: bucket %s: %w", b.Bucket, err)
		}
		report(fmt.Sprintf("bucket %s: ttl %s, replicas %d", b.Bucket, b.TTL, b.Replicas))
	}
	return nil
}

// BindStream returns the existing stream name ("": DefaultStream); a
// missing stream is an error wrapping ErrNotSetUp.
func BindStream(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Stream, error) {
	if name == "" {
		name = DefaultStream
	}
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("stream %s not found: %w", name, ErrNotSetUp)
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	return s, nil
}

// BindKeyValue returns the existing bucket; a missing one is an error
// wrapping ErrNotSetUp.
func BindKeyValue(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("bucket %s not found: %w", bucket, ErrNotSetUp)
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	return kv, nil
}
