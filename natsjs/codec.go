package natsjs

import (
	"fmt"
	"net/textproto"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

// UUIDHeader is the header that carries a message's Watermill UUID, the one
// watermill-nats uses. Each metadata entry is a header of its own.
const UUIDHeader = "_watermill_message_uuid"

// natsHeaderPrefix starts the headers that are JetStream's, not metadata:
// Nats-Msg-Id, Nats-Expected-Stream, Nats-TTL, ...
const natsHeaderPrefix = "Nats-"

// encode returns the JetStream message of m on subject topic. The UUID is
// also the Nats-Msg-Id, so that the stream drops a retried publish.
func encode(topic string, m delivery.Message) (*nats.Msg, error) {
	h := make(nats.Header, len(m.Metadata)+2)
	// The message and the value of its UUID headers are one allocation.
	out := &encoded{id: [1]string{m.UUID}}
	id := out.id[:] // shared by both headers: nats.go only reads them
	if err := headerValueError("UUID", m.UUID); err != nil {
		return nil, err
	}
	for k, v := range m.Metadata {
		if err := metadataKeyError(k); err != nil {
			return nil, err
		}
		if err := headerValueError(fmt.Sprintf("metadata %q", k), v); err != nil {
			return nil, err
		}
		h[k] = []string{v}
	}
	h[UUIDHeader] = id
	if m.UUID != "" {
		h[nats.MsgIdHdr] = id
	}
	out.msg = nats.Msg{Subject: topic, Header: h, Data: m.Payload}
	return &out.msg, nil
}

// encoded is what encode allocates: a message and its UUID header's value.
type encoded struct {
	msg nats.Msg
	id  [1]string
}

// decode reads a stored message. A missing UUID header gives an empty UUID;
// headers starting with "Nats-" are JetStream's and are left out of the
// metadata. A header with several values cannot be metadata: decode returns
// what it read and an error, and the message goes to the dead-letter topic.
func decode(h nats.Header, data []byte) (delivery.Message, error) {
	m := delivery.Message{Payload: data}
	var multi []string
	for k, vs := range h {
		switch {
		case strings.HasPrefix(k, natsHeaderPrefix):
			continue
		case len(vs) != 1:
			multi = append(multi, k)
		case k == UUIDHeader:
			m.UUID = vs[0]
		default:
			if m.Metadata == nil {
				m.Metadata = make(map[string]string, len(h))
			}
			m.Metadata[k] = vs[0]
		}
	}
	if len(multi) > 0 {
		return m, fmt.Errorf("natsjs: headers %q have several values; metadata holds one value per key", multi)
	}
	return m, nil
}

// DeadLetterReserve is the room, in bytes, that Publish keeps free within
// the server's max_payload for the metadata a dead letter adds (source topic,
// id, attempts, reason, and its own Nats-Msg-Id): a message whose payload and
// headers exceed max_payload less DeadLetterReserve is refused with
// [relay.ErrPayloadTooLarge], so that its dead letter can always be
// published. On a server whose max_payload is below 1536 bytes, half of it
// is kept, but never less than the dead letter of a message of that topic
// needs: 356 bytes plus the topic's length (at most 611 bytes, for a
// 255-byte topic). A dead letter's reason is cut to fit: at least 32 bytes of
// it remain, some 200 with the longest topic on a server of the default
// max_payload, far more usually.
//
// The headers are bounded too: JetStream stores at most 65,535 bytes of
// headers (nats-server v2.15.2 refuses more with err_code 10097), so Publish
// refuses metadata whose headers leave less than the dead letter's share of
// that with [relay.ErrInvalidMetadata].
const DeadLetterReserve = 768

// maxHeaderBytes is the largest header block JetStream stores: nats-server
// (v2.15.2) answers err_code 10097, "header size exceeds maximum allowed of
// 64k", above it.
const maxHeaderBytes = 1<<16 - 1

// minDeadLetterReason is the least room, in bytes, that Publish keeps for the
// reason of a message's dead letter.
const minDeadLetterReason = 32

// deadLetterHeaders is the most, in bytes, that the dead letter of a message
// published on topic adds to its headers, the reason's text not counted: the
// source topic, source id and attempts (decimal, at most 20 digits each), an
// empty reason, and its own Nats-Msg-Id (see settler.deadLetterID, at most
// 183 bytes with the longest stream and consumer names), as well as the
// header block's framing, should the source have had no headers. It does not
// depend on the group: consumer names are at most [MaxNameLength] bytes.
func deadLetterHeaders(topic string) int {
	const (
		line   = len(": \r\n")
		digits = 20 // a uint64 in decimal
		id     = len(deadLetterIDPrefix) + MaxNameLength + 1 + MaxNameLength + 1 + digits + 1 + 14
	)
	return len("NATS/1.0\r\n\r\n") +
		len(relay.MetadataSourceTopic) + line + len(topic) +
		len(relay.MetadataSourceID) + line + digits +
		len(relay.MetadataAttempts) + line + digits +
		len(relay.MetadataReason) + line +
		len(nats.MsgIdHdr) + line + id
}

// metadataKeyError says why k cannot be a metadata key on the wire: not a
// valid NATS header name, a "Nats-" header that JetStream would act on, or
// the UUID header.
func metadataKeyError(k string) error {
	switch {
	case !validHeaderKey(k):
		return fmt.Errorf("%w: key %q cannot be a NATS header (printable ASCII without spaces or %s)", relay.ErrInvalidMetadata, k, forbiddenKeyChars)
	case len(k) >= len(natsHeaderPrefix) && strings.EqualFold(k[:len(natsHeaderPrefix)], natsHeaderPrefix):
		return fmt.Errorf("%w: key %q starts with %q: such headers are JetStream's (they would change how the message is stored)", relay.ErrInvalidMetadata, k, natsHeaderPrefix)
	case k == UUIDHeader:
		return fmt.Errorf("%w: key %q is reserved for the message UUID", relay.ErrInvalidMetadata, k)
	}
	return nil
}

// headerValueError says why v would not arrive unchanged as a NATS header
// value: nats.go trims white space around values and turns line breaks into
// spaces, so a UUID "a " would even share its Nats-Msg-Id with "a".
func headerValueError(what, v string) error {
	// IndexByte, not ContainsAny, which builds a byte set on every call: this
	// runs for each header of every publish.
	if v != textproto.TrimString(v) || strings.IndexByte(v, '\r') >= 0 || strings.IndexByte(v, '\n') >= 0 {
		return fmt.Errorf("%w: %s %q has line breaks or white space at an end, which NATS headers do not keep", relay.ErrInvalidMetadata, what, v)
	}
	return nil
}

// headerSafe returns v as a NATS header keeps it, for the dead letter, which
// must be publishable whatever the handler's error text says.
func headerSafe(v string) string {
	return textproto.TrimString(strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(v))
}

// headerSize is the size on the wire of h, as nats.go encodes it.
func headerSize(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": ") + len(textproto.TrimString(v)) + len("\r\n")
		}
	}
	return n
}

// forbiddenKeyChars are the printable ASCII bytes nats.go refuses in a
// header name.
const forbiddenKeyChars = "\"()/,:;<=>?@[\\]{}"

// validHeaderKey mirrors the rule nats.go applies to header names, so that a
// bad key is reported before anything is sent.
func validHeaderKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(forbiddenKeyChars, c) >= 0 {
			return false
		}
	}
	return true
}
