package events

import (
	"slices"
)

// Resources names the bus resources whose access Permissions grants; empty
// fields take the defaults.
type Resources struct {
	// Stream is the event stream (DefaultStream).
	Stream string
	// FreezesBucket is the hooker's lease bucket (FreezesBucket).
	FreezesBucket string
	// LedgerBucket is the notifier's bucket (LedgerBucket).
	LedgerBucket string
}

func (r Resources) withDefaults() Resources {
	if r.Stream == "" {
		r.Stream = DefaultStream
	}
	if r.FreezesBucket == "" {
		r.FreezesBucket = FreezesBucket
	}
	if r.LedgerBucket == "" {
		r.LedgerBucket = LedgerBucket
	}
	return r
}

// Grant is what one identity may do on NATS: subjects it may publish to and
// subscribe to. A denied subject wins over an allowed wildcard that covers
// it.
type Grant struct {
	Publish   Subjects
	Subscribe Subjects
}

// Subjects are allowed and denied subject patterns.
type Subjects struct {
	Allow []string
	Deny  []string
}

// InboxPrefix is the reply-subject prefix of role's connections
// (nats.CustomInboxPrefix): each identity may subscribe to its own replies
// only, not to anybody else's.
func InboxPrefix(r Role) string { return "_INBOX_" + string(r) }

// Permissions derives role's NATS permissions: publish the event kinds the
// access table lets it emit (see Role.Emits) and exactly the JetStream API
// subjects its work needs; admin may do everything.
//
// What each grant is for:
//   - every role: JetStream account info, the stream's info and direct
//     reads of its messages (looking back at a backup's events), replies on
//     its own inbox;
//   - a service: the next-message, ack and info subjects of its own shared
//     durables (Durables), which Setup created;
//   - the hooker: every key of the freezes and backups buckets, and the
//     watchdogs' heartbeat key written with core NATS; and the creation of
//     its per-replica consumer "hooker-<replica>". NATS wildcards match
//     whole tokens only, so the narrowest grant is creating any consumer on
//     the stream; the shared durables are denied by name, so the hooker can
//     neither change nor read another service's consumer;
//   - the snapshotter: reads of both freeze buckets and writes of its
//     progress keys (SnapshotProgressPrefix) beside the freezes;
//   - the notifier: its ledger bucket;
//   - the scheduler: requests on the API subject, and replies to the
//     requester's, operator's and admin's inboxes;
//   - requester: backup requests and reads of events through short-lived
//     consumers it creates and deletes (the CLI's waits and lists), never
//     a shared durable; operator: that, unlocks and restores, and reads of
//     the freezes and backups buckets (`freezeframe status`, `backups`).
func Permissions(role Role, res Resources) Grant {
	if role == RoleAdmin {
		return Grant{Publish: Subjects{Allow: []string{">"}}, Subscribe: Subjects{Allow: []string{">"}}}
	}
	res = res.withDefaults()
	s := res.Stream
	var g grantBuilder
	g.pub("$JS.API.INFO", "$JS.API.STREAM.INFO."+s, "$JS.API.STREAM.MSG.GET."+s, "$JS.API.DIRECT.GET."+s, "$JS.API.DIRECT.GET."+s+".>")
	g.sub(InboxPrefix(role) + ".>")
	for _, k := range role.Emits() {
		g.pub(SubjectRoot + "." + string(k) + ".>")
	}
	for _, d := range Durables() {
		if d.Role == role {
			g.pub("$JS.API.CONSUMER.INFO."+s+"."+d.Name, "$JS.API.CONSUMER.MSG.NEXT."+s+"."+d.Name, "$JS.ACK."+s+"."+d.Name+".>")
			continue
		}
		// Another service's: neither pulled from nor acked, whatever a
		// wildcard below allows.
		g.denyPub("$JS.API.CONSUMER.MSG.NEXT."+s+"."+d.Name, "$JS.ACK."+s+"."+d.Name+".>", "$JS.API.CONSUMER.INFO."+s+"."+d.Name)
	}
	for _, d := range Durables() {
		// Setup's alone to create, change or delete.
		g.denyPub("$JS.API.CONSUMER.CREATE."+s+"."+d.Name, "$JS.API.CONSUMER.CREATE."+s+"."+d.Name+".>",
			"$JS.API.CONSUMER.DURABLE.CREATE."+s+"."+d.Name, "$JS.API.CONSUMER.DELETE."+s+"."+d.Name)
	}
	ownConsumers := func(ack bool) {
		g.pub("$JS.API.CONSUMER.CREATE."+s+".*", "$JS.API.CONSUMER.CREATE."+s+".*.>",
			"$JS.API.CONSUMER.INFO."+s+".*", "$JS.API.CONSUMER.MSG.NEXT."+s+".*", "$JS.API.CONSUMER.DELETE."+s+".*")
		if ack {
			g.pub("$JS.ACK." + s + ".*.>")
		}
	}
	switch role {
	case RoleHooker:
		ownConsumers(true)
		g.writeBucket(res.FreezesBucket, ">")
		g.writeBucket(BackupsBucket, ">")
	case RoleSnapshotter:
		g.readBucket(res.FreezesBucket)
		g.readBucket(BackupsBucket)
		g.pub("$KV." + res.FreezesBucket + "." + SnapshotProgressPrefix + ">")
	case RoleNotifier:
		g.writeBucket(res.LedgerBucket, ">")
	case RoleScheduler:
		g.sub("freezeframe.api.backup.>")
		for _, r := range []Role{RoleRequester, RoleOperator, RoleAdmin} {
			g.pub(InboxPrefix(r) + ".>")
		}
	case RoleRequester:
		ownConsumers(false)
		g.pub("freezeframe.api.backup.>")
	case RoleOperator:
		ownConsumers(false)
		g.pub("freezeframe.api.backup.>")
		// An operator may use the commands a requester uses, which reply
		// on the requester's inbox unless told otherwise (--role).
		g.sub(InboxPrefix(RoleRequester) + ".>")
		g.readBucket(res.FreezesBucket)
		g.readBucket(BackupsBucket)
	}
	return g.g
}

type grantBuilder struct{ g Grant }

func (b *grantBuilder) pub(subjects ...string) {
	b.g.Publish.Allow = appendNew(b.g.Publish.Allow, subjects)
}
func (b *grantBuilder) sub(subjects ...string) {
	b.g.Subscribe.Allow = appendNew(b.g.Subscribe.Allow, subjects)
}
func (b *grantBuilder) denyPub(subjects ...string) {
	b.g.Publish.Deny = appendNew(b.g.Publish.Deny, subjects)
}

// readBucket grants gets, watches and listings of a key-value bucket: its
// stream's info, direct gets, and the short-lived ordered consumers a
// watch creates (with their flow control).
func (b *grantBuilder) readBucket(bucket string) {
	kvs := "KV_" + bucket
	b.pub("$JS.API.STREAM.INFO."+kvs, "$JS.API.STREAM.MSG.GET."+kvs, "$JS.API.DIRECT.GET."+kvs, "$JS.API.DIRECT.GET."+kvs+".>",
		"$JS.API.CONSUMER.CREATE."+kvs, "$JS.API.CONSUMER.CREATE."+kvs+".>", "$JS.API.CONSUMER.DELETE."+kvs+".>",
		"$JS.API.CONSUMER.INFO."+kvs+".>", "$JS.FC."+kvs+".>")
}

// writeBucket grants reading the bucket and writing the keys that match
// keys.
func (b *grantBuilder) writeBucket(bucket, keys string) {
	b.readBucket(bucket)
	b.pub("$KV." + bucket + "." + keys)
}

func appendNew(to, subjects []string) []string {
	for _, s := range subjects {
		if !slices.Contains(to, s) {
			to = append(to, s)
		}
	}
	return to
}
