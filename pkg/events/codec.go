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

// Decode reads a NATS message as a freezeframe event, in binary or
// structured content mode, and validates the payload. Errors wrap
// ErrUndecodable or ErrUnknownType.
func Decode(h nats.Header, data []byte) (Event, error) {
	var ce event.Event
	if strings.HasPrefix(firstHeader(h, headerContentType), structuredMedia) {
		if err := json.Unmarshal(data, &ce); err != nil {
			return Event{}, fmt.Errorf("%w: structured event: %v", ErrUndecodable, err)
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
		return Event{}, fmt.Errorf("%w %q (id %s)", ErrUnknownType, ce.Type(), ce.ID())
	}
	if err := json.Unmarshal(ce.Data(), p); err != nil {
		return Event{}, fmt.Errorf("%w: %s %s payload: %v", ErrUndecodable, ce.Type(), ce.ID(), err)
	}
	if err := p.Validate(); err != nil {
		return Event{}, fmt.Errorf("%w: %s %s payload: %v", ErrUndecodable, ce.Type(), ce.ID(), err)
	}
	if id, _ := extensions(ce)[ExtBackupID].(string); id != "" && id != p.Ref().BackupID {
		return Event{}, fmt.Errorf("%w: %s: extension backupid %q differs from payload %q", ErrUndecodable, ce.ID(), id, p.Ref().BackupID)
	}
	return Event{CloudEvent: ce, Payload: p}, nil
}

func decodeBinary(h nats.Header, data []byte) (event.Event, error) {
	if v := firstHeader(h, headerPrefix+"specversion"); v != event.CloudEventsVersionV1 {
		return event.Event{}, fmt.Errorf("%w: ce-specversion %q, want %q", ErrUndecodable, v, event.CloudEventsVersionV1)
	}
	ec := &event.EventContextV1{}
	ce := event.Event{Context: ec}
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
		val, err := decodeHeaderValue(vals[0])
		if err != nil {
			return event.Event{}, fmt.Errorf("%w: header %s: %v", ErrUndecodable, name, err)
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
