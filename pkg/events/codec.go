package events

import (
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
	// A drop-in for encoding/json, with its semantics and less CPU per
	// call: every hop encodes a payload once and decodes it at least once
	// (make bench: BenchmarkCodec and the hop ratio).
	json "github.com/segmentio/encoding/json"
)

const (
	headerPrefix      = "ce-"
	headerContentType = "Content-Type"
	structuredMedia   = "application/cloudevents"
)

// ErrUndecodable wraps every reason a message cannot be read as an event. It
// is permanent: redelivering the same bytes cannot help.
var ErrUndecodable = errors.New("undecodable event")

// ErrUnknownType is returned for a well-formed CloudEvent of a type this
// version of the contract does not know.
var ErrUnknownType = errors.New("unknown event type")

// ErrUnknownVersion is returned, with ErrUndecodable, for a CloudEvents
// specversion other than 1.0, and, with ErrUnknownType, for a freezeframe
// type in a version this build does not read (requested.v2 where only v1 is
// known): a newer publisher than this consumer.
var ErrUnknownVersion = errors.New("unknown version")

// ErrSubjectMismatch is returned, with ErrUndecodable, for an event whose
// type, workload or backup id differs from what its NATS subject says:
// consumers select events by subject, so such an event would reach a
// handler that did not ask for it, or pass for another backup's.
var ErrSubjectMismatch = errors.New("event does not match its subject")

// DefaultMaxEventSize bounds an event on the wire (see
// ConsumerConfig.MaxEventSize and WithMaxEventSize). freezeframe's own
// events are a few hundred bytes to a few KiB; a Snapshotted of a workload
// with a hundred volumes is about 25 KiB.
const DefaultMaxEventSize = 64 << 10

// ErrTooLarge is returned for an event larger than the limit: by the
// publisher, which refuses to publish it, and as the reason a consumer
// terminates one. It is permanent.
var ErrTooLarge = errors.New("event too large")

// wireSize is the size of a message as the event limits count it: the
// payload and every header name and value.
func wireSize(h nats.Header, data []byte) int {
	n := len(data)
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v)
		}
	}
	return n
}

// Encode writes e as a NATS message in binary content mode: every context
// attribute and extension as a "ce-" header, the JSON payload as the body.
func Encode(e Event) (*nats.Msg, error) {
	ce := e.CloudEvent
	k, ok := KindOf(ce.Type())
	if !ok {
		return nil, fmt.Errorf("encode %q: %w", ce.Type(), ErrUnknownType)
	}
	exts := extensions(ce)
	// Sized for the attributes, the extensions, Nats-Msg-Id and traceparent.
	h := make(nats.Header, 10+len(exts))
	m := &nats.Msg{Subject: Subject(k, e.Payload.Ref()), Header: h}
	// One backing array for every header's single value instead of one
	// allocation each; capacity 1 per value, so a later Add copies.
	vals := make([]string, 0, 8+len(exts))
	set := func(key, val string) {
		vals = append(vals, val)
		h[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	set(headerPrefix+"specversion", ce.SpecVersion())
	set(headerPrefix+"id", encodeHeaderValue(ce.ID()))
	set(headerPrefix+"source", encodeHeaderValue(ce.Source()))
	set(headerPrefix+"type", ce.Type())
	if s := ce.Subject(); s != "" {
		set(headerPrefix+"subject", encodeHeaderValue(s))
	}
	if t := ce.Time(); !t.IsZero() {
		set(headerPrefix+"time", t.UTC().Format(time.RFC3339Nano))
	}
	if ct := ce.DataContentType(); ct != "" {
		set(headerContentType, ct)
	}
	if ds := ce.DataSchema(); ds != "" {
		set(headerPrefix+"dataschema", encodeHeaderValue(ds))
	}
	for name, v := range exts {
		s, err := types.Format(v)
		if err != nil {
			return nil, fmt.Errorf("encode extension %s: %w", name, err)
		}
		set(headerPrefix+name, encodeHeaderValue(s))
	}
	m.Data = ce.DataEncoded
	return m, nil
}

// DecodeMessage reads a message delivered on subject as a freezeframe event
// (see Decode) and checks it against the subject: the kind in the subject
// must be the kind of the event's type, and the workload and backup id in
// the subject those of the payload. It also checks the event's source
// against who may emit its kind (CheckSource). Everything read from the
// stream goes through it. Errors wrap ErrUndecodable (with
// ErrSubjectMismatch, ErrBadSubject, ErrForbiddenSource or ErrUnknownVersion
// where they apply) or ErrUnknownType; on error the Event is zero.
func DecodeMessage(subject string, h nats.Header, data []byte) (Event, error) {
	ev, err := Decode(h, data)
	if err != nil {
		return Event{}, err
	}
	if err := checkSubject(subject, ev); err != nil {
		return Event{}, err
	}
	if err := CheckSource(ev); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// checkSubject compares a decoded event with the subject it came on.
func checkSubject(subject string, ev Event) error {
	k, ref, err := ParseSubject(subject)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUndecodable, ev.CloudEvent.ID(), err)
	}
	mismatch := func(what, inSubject, inEvent string) error {
		return fmt.Errorf("%w: %w: %s: %s %q in the subject, %q in the event", ErrUndecodable, ErrSubjectMismatch, short(ev.CloudEvent.ID()), what, inSubject, short(inEvent))
	}
	got := ev.Payload.Ref()
	// Payloads may spell the workload kind in any form NormalizeKind
	// accepts; the subject's is canonical once parsed.
	wkind, _ := NormalizeKind(got.Workload.Kind) // validated by Decode
	switch {
	case k != ev.Kind():
		return mismatch("kind", string(k), ev.CloudEvent.Type())
	case ref.BackupID != got.BackupID:
		return mismatch("backup id", ref.BackupID, got.BackupID)
	case ref.Workload.Cluster != got.Workload.Cluster:
		return mismatch("cluster", ref.Workload.Cluster, got.Workload.Cluster)
	case ref.Workload.Namespace != got.Workload.Namespace:
		return mismatch("namespace", ref.Workload.Namespace, got.Workload.Namespace)
	case ref.Workload.Kind != wkind:
		return mismatch("workload kind", ref.Workload.Kind, got.Workload.Kind)
	case ref.Workload.Name != got.Workload.Name:
		return mismatch("workload name", ref.Workload.Name, got.Workload.Name)
	}
	return nil
}

// Decode reads a NATS message as a freezeframe event, in binary or
// structured content mode, and validates the payload. It does not know the
// subject and does not check the source: use DecodeMessage for messages
// from the stream. Errors wrap
// ErrUndecodable or ErrUnknownType (with ErrUnknownVersion for a version
// this build does not read); on error the Event is zero.
func Decode(h nats.Header, data []byte) (Event, error) {
	var ce event.Event
	if strings.HasPrefix(firstHeader(h, headerContentType), structuredMedia) {
		if err := json.Unmarshal(data, &ce); err != nil {
			return Event{}, fmt.Errorf("%w: structured event: %v", ErrUndecodable, err)
		}
		// The SDK also reads 0.3 events; freezeframe's contract is 1.0.
		if v := ce.SpecVersion(); v != event.CloudEventsVersionV1 {
			return Event{}, fmt.Errorf("%w: %w: specversion %q, want %q", ErrUndecodable, ErrUnknownVersion, short(v), event.CloudEventsVersionV1)
		}
		if err := ce.Validate(); err != nil {
			return Event{}, fmt.Errorf("%w: %v", ErrUndecodable, err)
		}
	} else {
		var err error
		if ce, err = decodeBinary(h, data); err != nil {
			return Event{}, err
		}
	}
	p, ok := newPayload(ce.Type())
	if !ok {
		if known, v, ok := otherVersion(ce.Type()); ok {
			return Event{}, fmt.Errorf("%w %q (id %s): %w %s of %s, this build reads %s", ErrUnknownType, short(ce.Type()), short(ce.ID()), ErrUnknownVersion, short(v), typeName(known), typeVersion(known))
		}
		return Event{}, fmt.Errorf("%w %q (id %s)", ErrUnknownType, short(ce.Type()), short(ce.ID()))
	}
	if err := json.Unmarshal(ce.Data(), p); err != nil {
		return Event{}, fmt.Errorf("%w: %s %s payload: %v", ErrUndecodable, ce.Type(), ce.ID(), err)
	}
	if err := p.Validate(); err != nil {
		return Event{}, fmt.Errorf("%w: %s %s payload: %v", ErrUndecodable, ce.Type(), ce.ID(), err)
	}
	// The extensions repeat what the payload says, for filtering by
	// attribute; a structured event may carry them as other JSON types.
	ref := p.Ref()
	for _, ext := range [...]struct{ name, want string }{{ExtBackupID, ref.BackupID}, {ExtCluster, ref.Workload.Cluster}} {
		v, ok := extensions(ce)[ext.name]
		if !ok {
			continue
		}
		if got, err := types.Format(v); err != nil || got != ext.want {
			return Event{}, fmt.Errorf("%w: %s: extension %s %q differs from payload %q", ErrUndecodable, short(ce.ID()), ext.name, short(fmt.Sprint(v)), ext.want)
		}
	}
	return Event{CloudEvent: ce, Payload: p}, nil
}

func decodeBinary(h nats.Header, data []byte) (event.Event, error) {
	if v := firstHeader(h, headerPrefix+"specversion"); v != event.CloudEventsVersionV1 {
		if v == "" {
			return event.Event{}, fmt.Errorf("%w: ce-specversion: required", ErrUndecodable)
		}
		return event.Event{}, fmt.Errorf("%w: %w: ce-specversion %q, want %q", ErrUndecodable, ErrUnknownVersion, short(v), event.CloudEventsVersionV1)
	}
	ec := &event.EventContextV1{}
	ce := event.Event{Context: ec}
	// An attribute given twice (two values, or two spellings of its header
	// name) is refused rather than resolved: which one won would depend on
	// map order here, and another reader could pick the other one.
	var seen uint8
	once := func(bit uint8) bool {
		dup := seen&bit != 0
		seen |= bit
		return !dup
	}
	for name, vals := range h {
		if len(vals) == 0 || len(name) <= len(headerPrefix) {
			continue
		}
		// Our own publishers write lower-case names; only others pay for
		// the case-insensitive comparison.
		if name[:len(headerPrefix)] != headerPrefix && !strings.EqualFold(name[:len(headerPrefix)], headerPrefix) {
			continue
		}
		attr := name[len(headerPrefix):]
		if !isLower(attr) {
			attr = strings.ToLower(attr)
		}
		if len(vals) > 1 {
			return event.Event{}, fmt.Errorf("%w: header %s: %d values, want one", ErrUndecodable, short(name), len(vals))
		}
		bit := attrBit(attr)
		if bit != 0 && !once(bit) || bit == 0 && ec.Extensions[attr] != nil {
			return event.Event{}, fmt.Errorf("%w: attribute %s: given twice", ErrUndecodable, short(attr))
		}
		val, err := decodeHeaderValue(vals[0])
		if err != nil {
			return event.Event{}, fmt.Errorf("%w: header %s: %v", ErrUndecodable, short(name), err)
		}
		switch attr {
		case "specversion":
		case "id":
			ce.SetID(val)
		case "source":
			src, err := sourceURI(val)
			if err != nil {
				return event.Event{}, fmt.Errorf("%w: ce-source: %v", ErrUndecodable, err)
			}
			ec.Source = src
		case "type":
			ce.SetType(val)
		case "subject":
			ce.SetSubject(val)
		case "dataschema":
			if err := ce.Context.SetDataSchema(val); err != nil {
				return event.Event{}, fmt.Errorf("%w: ce-dataschema: %v", ErrUndecodable, err)
			}
		case "time":
			t, err := time.Parse(time.RFC3339Nano, val)
			if err != nil {
				return event.Event{}, fmt.Errorf("%w: ce-time: %v", ErrUndecodable, err)
			}
			ce.SetTime(t)
		default:
			if err := ce.Context.SetExtension(attr, val); err != nil {
				return event.Event{}, fmt.Errorf("%w: extension %s: %v", ErrUndecodable, attr, err)
			}
		}
	}
	if ct := firstHeader(h, headerContentType); ct != "" {
		if ct != event.ApplicationJSON {
			if _, _, err := mime.ParseMediaType(ct); err != nil {
				return event.Event{}, fmt.Errorf("%w: content type %q: %v", ErrUndecodable, ct, err)
			}
		}
		ce.SetDataContentType(ct)
	}
	// What Validate would check of an event built here: the required
	// attributes (every setter that can fail has been checked above).
	switch {
	case strings.TrimSpace(ce.ID()) == "":
		return event.Event{}, fmt.Errorf("%w: ce-id: required", ErrUndecodable)
	case strings.TrimSpace(ce.Source()) == "":
		return event.Event{}, fmt.Errorf("%w: ce-source: required", ErrUndecodable)
	case strings.TrimSpace(ce.Type()) == "":
		return event.Event{}, fmt.Errorf("%w: ce-type: required", ErrUndecodable)
	}
	ce.DataEncoded = data
	return ce, nil
}

// attrBit gives each context attribute decodeBinary reads a bit of its own,
// to find one given twice; extensions are found in the context's map.
func attrBit(attr string) uint8 {
	switch attr {
	case "specversion":
		return 1 << 0
	case "id":
		return 1 << 1
	case "source":
		return 1 << 2
	case "type":
		return 1 << 3
	case "subject":
		return 1 << 4
	case "dataschema":
		return 1 << 5
	case "time":
		return 1 << 6
	}
	return 0
}

// extensions returns ce's extensions to read, without the copy
// Event.Extensions makes for every call when the context is a v1 one.
func extensions(ce event.Event) map[string]any {
	if ec, ok := ce.Context.(*event.EventContextV1); ok {
		return ec.Extensions
	}
	return ce.Extensions()
}

// sourceURIs holds parsed event sources. A deployment has a handful (one
// per service), and parsing one costs a URL parse and its allocations on
// every hop; the bound keeps a publisher inventing sources from growing it.
var sourceURIs struct {
	sync.Mutex
	m map[string]types.URIRef
}

const maxCachedSources = 64

// sourceURI parses a CloudEvents source (a URI-reference).
func sourceURI(s string) (types.URIRef, error) {
	sourceURIs.Lock()
	u, ok := sourceURIs.m[s]
	sourceURIs.Unlock()
	if ok {
		return u, nil
	}
	parsed, err := url.Parse(s)
	if err != nil {
		return types.URIRef{}, err
	}
	u = types.URIRef{URL: *parsed}
	sourceURIs.Lock()
	if sourceURIs.m == nil {
		sourceURIs.m = make(map[string]types.URIRef)
	}
	if len(sourceURIs.m) < maxCachedSources {
		sourceURIs.m[s] = u
	}
	sourceURIs.Unlock()
	return u, nil
}

func isLower(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return false
		}
	}
	return true
}

func firstHeader(h nats.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	// NATS headers are case-sensitive; accept other spellings of the same
	// name from publishers that canonicalise.
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

// encodeHeaderValue percent-encodes what the CloudEvents NATS binding says
// must be: space, '"', '%' and anything outside printable ASCII.
func encodeHeaderValue(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsEscape(c) {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func needsEscape(c byte) bool { return c <= 0x20 || c >= 0x7f || c == '"' || c == '%' }

func decodeHeaderValue(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("truncated percent escape in %q", s)
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("bad percent escape in %q", s)
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// otherVersion reports whether t is a freezeframe type known in another
// version than t's, and returns that known type and t's version.
func otherVersion(t string) (known, version string, ok bool) {
	name, version, found := cutVersion(t)
	if !found {
		return "", "", false
	}
	for kt := range kindByType {
		if kn, _, _ := cutVersion(kt); kn == name {
			return kt, version, true
		}
	}
	return "", "", false
}

// cutVersion splits "io.freezeframe.backup.requested.v1" into its name and
// "v1".
func cutVersion(t string) (name, version string, ok bool) {
	i := strings.LastIndexByte(t, '.')
	if i < 0 || i+2 > len(t) || t[i+1] != 'v' {
		return "", "", false
	}
	return t[:i], t[i+1:], true
}

func typeName(t string) string    { n, _, _ := cutVersion(t); return n }
func typeVersion(t string) string { _, v, _ := cutVersion(t); return v }
