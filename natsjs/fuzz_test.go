package natsjs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/testkit/fuzzkv"
	"github.com/go-relay/relay/internal/testkit/natstest"
)

// The fuzz targets of the JetStream wire codec and of the stream-name rule.
// Run each with
//
//	go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime 60s ./natsjs/
//	go test -run '^$' -fuzz '^FuzzCodecRoundTrip$' -fuzztime 60s ./natsjs/
//	go test -run '^$' -fuzz '^FuzzStreamName$' -fuzztime 60s ./natsjs/
//
// Without -fuzz they run over their seeds and testdata/fuzz as plain tests.
//
// FuzzCodecRoundTrip found that nats.go trims header values and turns CR and
// LF into spaces, which the encoder used to send altered; its inputs are kept
// in testdata/fuzz and the encoder now refuses such values.

// fuzzHeader reads headers from fuzz bytes: entries of a control byte, a key
// and a value (each a length byte and its bytes, cut to what is left). Bit 0
// of the control byte prefixes the key with "Nats-", bit 1 makes it the UUID
// header; the value is added, so a key can get several values.
func fuzzHeader(b []byte) nats.Header {
	var h nats.Header
	next := func() string {
		if len(b) == 0 {
			return ""
		}
		n := min(int(b[0]), len(b)-1)
		s := string(b[1 : 1+n])
		b = b[1+n:]
		return s
	}
	for len(b) > 0 {
		ctl := b[0]
		b = b[1:]
		k := next()
		switch {
		case ctl&2 != 0:
			k = UUIDHeader
		case ctl&1 != 0:
			k = natsHeaderPrefix + k
		}
		if h == nil {
			h = make(nats.Header)
		}
		h[k] = append(h[k], next()) // not h.Add: keys keep their case on the wire
	}
	return h
}

// fuzzHeaderBytes is the inverse of fuzzHeader, for seeds: ctl, key, value
// triples.
func fuzzHeaderBytes(entries ...any) []byte {
	var b []byte
	for i := 0; i < len(entries); i += 3 {
		b = append(b, byte(entries[i].(int)))
		for _, s := range entries[i+1 : i+3] {
			b = append(b, byte(len(s.(string))))
			b = append(b, s.(string)...)
		}
	}
	return b
}

// FuzzDecode reads messages with arbitrary headers: any names and values, a
// name given several values, "Nats-" headers and the UUID header. hdr is also
// parsed as a raw header block, as nats.go receives it. decode must not
// panic, must keep the payload, and must turn every other header into
// metadata or report it.
func FuzzDecode(f *testing.F) {
	f.Add(fuzzHeaderBytes(2, "", "u-1", 0, "k", "v", 1, "Msg-Id", "u-1"), []byte("payload"))
	f.Add(fuzzHeaderBytes(0, "k", "v1", 0, "k", "v2"), []byte(nil))
	f.Add(fuzzHeaderBytes(2, "", "a", 2, "", "b", 0, "", ""), []byte{0, 0xff})
	f.Add(fuzzHeaderBytes(0, "nats-lower", "x", 0, "NATS-UPPER", "y", 0, "\xff\r\n:", "\x00"), []byte("p"))
	f.Add([]byte("NATS/1.0\r\n_watermill_message_uuid: u\r\nk: v\r\nk: w\r\nNats-Msg-Id: u\r\n\r\n"), []byte("p"))
	f.Add([]byte("NATS/1.0 503\r\n\r\n"), []byte(nil))
	f.Fuzz(func(t *testing.T, hdr, data []byte) {
		fuzzCheckDecode(t, fuzzHeader(hdr), data)
		if h, err := nats.DecodeHeadersMsg(hdr); err == nil {
			fuzzCheckDecode(t, h, data)
		}
	})
}

func fuzzCheckDecode(t *testing.T, h nats.Header, data []byte) {
	t.Helper()
	m, err := decode(h, data)
	if !bytes.Equal(m.Payload, data) {
		t.Fatalf("decode(%q) payload = %q, want %q", h, m.Payload, data)
	}
	want := delivery.Message{Payload: data}
	multi := false
	for k, vs := range h {
		switch {
		case strings.HasPrefix(k, "Nats-"):
		case len(vs) != 1:
			multi = true
		case k == UUIDHeader:
			want.UUID = vs[0]
		default:
			if want.Metadata == nil {
				want.Metadata = make(map[string]string)
			}
			want.Metadata[k] = vs[0]
		}
	}
	if multi != (err != nil) {
		t.Fatalf("decode(%q) error = %v; headers with several values: %v", h, err, multi)
	}
	if m.UUID != want.UUID || !maps.Equal(m.Metadata, want.Metadata) {
		t.Fatalf("decode(%q) = UUID %q metadata %q, want UUID %q metadata %q", h, m.UUID, m.Metadata, want.UUID, want.Metadata)
	}
}

// fuzzSubject is the core NATS subject FuzzCodecRoundTrip sends on.
const fuzzSubject = "relay.fuzz.codec"

// FuzzCodecRoundTrip encodes messages of arbitrary UUID, metadata and payload,
// sends them through a real embedded server (so nats.go writes and parses the
// headers) and decodes what arrives. The encoder either refuses the message,
// because a metadata key cannot be a header (fuzzKeyProblem restates that
// rule), or the message arrives unchanged.
func FuzzCodecRoundTrip(f *testing.F) {
	f.Add("u-1", fuzzkv.Bytes("a", "1", "B", ""), []byte("hello"))
	f.Add("", []byte(nil), []byte(nil))
	f.Add("6f1c2a9e-0d4b-4c1e-9a7f-2b3c4d5e6f70", fuzzkv.Bytes("clé", "välue", "k", "\x00\xff"), []byte{0, 0xff, '\n'})
	f.Add("u", fuzzkv.Bytes("Nats-Msg-Id", "x"), []byte("p"))
	f.Add("u", fuzzkv.Bytes("nats-ttl", "1s"), []byte("p"))
	f.Add("u", fuzzkv.Bytes(UUIDHeader, "x"), []byte("p"))
	f.Add("u", fuzzkv.Bytes("a:b", "x", "", "y"), []byte("p"))

	s := natstest.Start(f)
	nc := natstest.Connect(f, s)
	sub, err := nc.SubscribeSync(fuzzSubject)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, uuid string, metadata, payload []byte) {
		want := delivery.Message{UUID: uuid, Metadata: fuzzkv.Map(metadata), Payload: payload}
		var bad []string
		for k := range want.Metadata {
			if problem := fuzzKeyProblem(k); problem != "" {
				bad = append(bad, k+": "+problem)
			}
		}
		nm, err := encode(fuzzSubject, want)
		refuse := len(bad) > 0 || fuzzAltered(want)
		switch {
		case refuse && err == nil:
			t.Fatalf("encode(%+v) accepted what NATS headers cannot carry unchanged: keys %q", want, bad)
		case !refuse && err != nil:
			t.Fatalf("encode(%+v) refused valid metadata: %v", want, err)
		case err != nil:
			if !errors.Is(err, relay.ErrInvalidMetadata) {
				t.Fatalf("encode(%+v) = %v, want an error wrapping relay.ErrInvalidMetadata", want, err)
			}
			return
		}
		if err := nc.PublishMsg(nm); err != nil {
			t.Fatalf("publish encode(%+v): %v", want, err)
		}
		msg, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("receive encode(%+v): %v", want, err)
		}
		got, err := decode(msg.Header, msg.Data)
		if err != nil {
			t.Fatalf("decode(%q) of encode(%+v): %v", msg.Header, want, err)
		}
		if got.UUID != want.UUID || !bytes.Equal(got.Payload, want.Payload) || !maps.Equal(got.Metadata, want.Metadata) {
			t.Fatalf("sent UUID %q metadata %q payload %q; arrived as UUID %q metadata %q payload %q (headers %q)",
				want.UUID, want.Metadata, want.Payload, got.UUID, got.Metadata, got.Payload, msg.Header)
		}
	})
}

// fuzzKeyProblem restates which metadata keys cannot be headers: nats.go
// takes printable ASCII but for some separators, "Nats-" headers (in any
// case) are JetStream's, and the UUID header is taken.
func fuzzKeyProblem(k string) string {
	if k == "" {
		return "empty"
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < '!' || c > '~' || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return fmt.Sprintf("byte %q", c)
		}
	}
	switch {
	case strings.HasPrefix(strings.ToLower(k), "nats-"):
		return "a Nats- header"
	case k == UUIDHeader:
		return "the UUID header"
	}
	return ""
}

// fuzzAltered reports whether nats.go would change a header value of m: it
// trims white space around values and turns line breaks into spaces. encode
// must refuse such messages (it once sent them, altered).
func fuzzAltered(m delivery.Message) bool {
	altered := func(v string) bool { return strings.Trim(v, " \t\r\n") != v || strings.ContainsAny(v, "\r\n") }
	if altered(m.UUID) {
		return true
	}
	for _, v := range m.Metadata {
		if altered(v) {
			return true
		}
	}
	return false
}

// fuzzNameProblem says why name is not a valid JetStream stream or consumer
// name of at most MaxNameLength bytes, or returns "".
func fuzzNameProblem(name string) string {
	if name == "" {
		return "empty"
	}
	if len(name) > MaxNameLength {
		return fmt.Sprintf("%d bytes, over MaxNameLength", len(name))
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`.*>/\`, c) >= 0 {
			return fmt.Sprintf("holds byte %q", c)
		}
	}
	return ""
}

// fuzzTopicVariants returns topics close to topic: the ones the old rule
// (sanitize, then a short hash) or a careless rewrite could confuse with it.
func fuzzTopicVariants(topic string) []string {
	sum := sha256.Sum256([]byte(topic))
	hash := hex.EncodeToString(sum[:])[:hashLength]
	v := []string{
		topic,
		strings.ReplaceAll(topic, ".", "_"),
		strings.ReplaceAll(topic, "_", "."),
		strings.ReplaceAll(topic, "-", "_"),
		strings.ReplaceAll(topic, ".", "-"),
		strings.ToLower(topic),
		strings.ToUpper(topic),
		StreamName(topic),
		strings.ReplaceAll(topic, ".", "_") + "_" + hash,
		topic + "_" + hash,
		topic + "_" + strings.ToUpper(hash),
		topic + "." + hash,
		topic + "x",
		topic + "_",
	}
	if len(topic) > 1 {
		v = append(v, topic[:len(topic)-1], topic[1:])
	}
	return v
}

// FuzzStreamName checks, for two arbitrary topics and the near variants of
// the first, that ValidateTopic never panics, that every valid topic (and
// every non-empty group) gets a valid JetStream name, and that different
// valid topics never share a stream name.
func FuzzStreamName(f *testing.F) {
	f.Add("a.b", "a_b")
	f.Add("orders", "orders_0123456789abcdef")
	f.Add("café.commandes", "caf__.commandes")
	f.Add(strings.Repeat("x", 100)+".1", strings.Repeat("x", 100)+".2")
	f.Add(strings.Repeat("y", 64), strings.Repeat("y", 65))
	f.Add("Orders-EU_2", "orders-eu_2")
	f.Fuzz(func(t *testing.T, a, b string) {
		names := make(map[string]string)
		for _, topic := range append(fuzzTopicVariants(a), b) {
			if err := relay.ValidateTopic(topic); err != nil {
				continue
			}
			name := StreamName(topic)
			if problem := fuzzNameProblem(name); problem != "" {
				t.Fatalf("StreamName(%q) = %q: %s", topic, name, problem)
			}
			if other, ok := names[name]; ok && other != topic {
				t.Fatalf("topics %q and %q share stream name %q", other, topic, name)
			}
			names[name] = topic
		}
		for _, group := range []string{a, b} {
			if group == "" {
				continue // WithGroup refuses an empty group
			}
			if name := ConsumerName(group); fuzzNameProblem(name) != "" {
				t.Fatalf("ConsumerName(%q) = %q: %s", group, name, fuzzNameProblem(name))
			}
		}
	})
}

// TestStreamNameNearCollisions derives stream names for a large generated set
// of topics that differ only in what the name rule rewrites or cuts: the
// separators '.', '_' and '-', case, non-ASCII bytes, lengths around
// MaxNameLength, and suffixes that look like the rule's hash. No two may
// share a stream name.
func TestStreamNameNearCollisions(t *testing.T) {
	parts := []string{"a", "b", "A", "_", "-", ".", "é", "0", "f"}
	var topics []string
	var gen func(prefix string, depth int)
	gen = func(prefix string, depth int) {
		if prefix != "" {
			topics = append(topics, prefix)
		}
		if depth == 0 {
			return
		}
		for _, p := range parts {
			gen(prefix+p, depth-1)
		}
	}
	gen("", 5)
	for _, n := range []int{hashLength, MaxNameLength - hashLength - 2, MaxNameLength - hashLength - 1, MaxNameLength - 1, MaxNameLength, MaxNameLength + 1, 200, relay.MaxTopicLength - 1} {
		base := strings.Repeat("x", n)
		for _, tail := range []string{"", "y", ".y", "_y", "-y", ".z", "é"} {
			topics = append(topics, base+tail, tail+base)
		}
	}
	for _, t0 := range []string{"orders", "a.b", strings.Repeat("o", 60) + ".eu"} {
		topics = append(topics, fuzzTopicVariants(t0)...)
		topics = append(topics, fuzzTopicVariants(StreamName(t0))...)
	}
	for i := range 2000 {
		topics = append(topics, fmt.Sprintf("t_%016x", i), fmt.Sprintf("t.%016x", i), fmt.Sprintf("t_%016X", i))
	}

	names := make(map[string]string, len(topics))
	valid := 0
	for _, topic := range topics {
		if relay.ValidateTopic(topic) != nil {
			continue
		}
		valid++
		name := StreamName(topic)
		if problem := fuzzNameProblem(name); problem != "" {
			t.Fatalf("StreamName(%q) = %q: %s", topic, name, problem)
		}
		if other, ok := names[name]; ok && other != topic {
			t.Fatalf("topics %q and %q share stream name %q", other, topic, name)
		}
		names[name] = topic
	}
	if valid < 50000 {
		t.Fatalf("only %d valid topics generated; the generator is broken", valid)
	}
}
