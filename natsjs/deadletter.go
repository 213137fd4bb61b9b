package natsjs

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/textproto"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

// PublishDeadLetter publishes the dead letter with a Nats-Msg-Id of its own,
// per group and stored source message (see deadLetterID), so that a repeated
// dead-lettering of one message is dropped by the stream, while each group's
// dead letter is kept. A duplicate answer therefore means that this message's
// dead letter is stored already.
//
// The dead letter must be publishable whatever the source message: metadata
// keys that cannot be sent as headers (a message stored by another client)
// are left out, and said so in the reason; the reason is cut so that the
// dead letter fits in the server's max_payload (Publish keeps
// [DeadLetterReserve] bytes free for this).
func (x settler) PublishDeadLetter(ctx context.Context, topic string, m delivery.Message) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return err
	}
	e := x.s.e
	m.Metadata = maps.Clone(m.Metadata)
	var dropped []string
	for k, v := range m.Metadata {
		if metadataKeyError(k) != nil {
			dropped = append(dropped, k)
			delete(m.Metadata, k)
			continue
		}
		m.Metadata[k] = headerSafe(v) // the reason is an error text: it may span lines
	}
	m.UUID = headerSafe(m.UUID)
	if len(dropped) > 0 {
		slices.Sort(dropped)
		m.Metadata[relay.MetadataReason] += fmt.Sprintf(" (metadata keys %q left out of the dead letter: not valid NATS header names)", dropped)
	}
	nm, err := encode(topic, m)
	if err != nil {
		return err
	}
	nm.Header.Set(nats.MsgIdHdr, x.deadLetterID())
	limit := e.js.Conn().MaxPayload()
	if over := int64(len(nm.Data)+headerSize(nm.Header)) - limit; limit > 0 && over > 0 {
		reason := textproto.TrimString(nm.Header.Get(relay.MetadataReason)) // as sent
		if int64(len(reason)) >= over {
			nm.Header.Set(relay.MetadataReason, truncate(reason, len(reason)-int(over)))
		}
	}
	if err := e.checkSize(nm, limit, 0); err != nil {
		return err
	}
	ctx, cancel := e.bound(ctx)
	defer cancel()
	if err := e.retry(ctx, topic, func(ctx context.Context) error { return e.publishOne(ctx, topic, nm) }); err != nil {
		return err
	}
	x.s.log.Warn("natsjs: message dead-lettered",
		slog.String("id", x.d.ID),
		slog.Int("attempts", x.d.Attempt),
		slog.String("reason", nm.Header.Get(relay.MetadataReason)),
		slog.String("dead_letter_topic", topic))
	return nil
}

// deadLetterID is the Nats-Msg-Id of the dead letter of x's message: group,
// stream, stream sequence and the time the server stored the message. The
// sequence alone is not unique for ever: when the stream is deleted and
// created again (an operator's `nats stream rm`, then relay) sequences restart
// at 1, and a new poison message would get an old dead letter's id and be
// dropped as a duplicate inside the dead-letter stream's duplicate window.
// The stored time tells the two apart; a redelivery of the same stored message
// keeps it, so its repeated dead-lettering is still de-duplicated. Stream and
// consumer names are at most 64 bytes: the id stays short.
func (x settler) deadLetterID() string {
	id := "relay-dead-letter:" + ConsumerName(x.s.e.cfg.group) + ":" + StreamName(x.s.topic) + ":" + x.d.ID
	if md, err := x.msg.Metadata(); err == nil {
		id += ":" + strconv.FormatInt(md.Timestamp.UnixNano(), 36)
	}
	return id
}

// truncate cuts s to at most n bytes, on a UTF-8 boundary, marking the cut
// with "..." when there is room for it.
func truncate(s string, n int) string {
	const mark = "..."
	if len(s) <= n {
		return s
	}
	if n <= len(mark) {
		return ""
	}
	keep := n - len(mark)
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + mark
}
