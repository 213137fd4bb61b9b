package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/textproto"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

// PublishDeadLetter publishes the dead letter with a Nats-Msg-Id of its own,
// per group and stored source message (see deadLetterID), so that a repeated
// dead-lettering of one message is dropped by the stream, while each group's
// dead letter is kept. A duplicate answer counts as success only once the
// dead-letter stream is seen to hold a message of that id (see confirmStored);
// otherwise the dead letter is published again under a fresh id.
//
// The dead letter must be publishable whatever the source message: metadata
// keys that cannot be sent as headers (a message stored by another client)
// are left out, and said so in the reason; the reason is cut so that the
// dead letter fits in the server's max_payload and in JetStream's header
// limit (Publish keeps room for this, see [DeadLetterReserve]).
func (x *settler) PublishDeadLetter(ctx context.Context, topic string, m delivery.Message) error {
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
	id := x.deadLetterID()
	nm.Header.Set(nats.MsgIdHdr, id)
	limit := e.js.Conn().MaxPayload()
	hdr := headerSize(nm.Header)
	over := int64(hdr - maxHeaderBytes)
	if limit > 0 {
		over = max(over, int64(len(nm.Data)+hdr)-limit)
	}
	if over > 0 {
		reason := textproto.TrimString(nm.Header.Get(relay.MetadataReason)) // as sent
		if int64(len(reason)) >= over {
			nm.Header.Set(relay.MetadataReason, truncate(reason, len(reason)-int(over)))
		}
	}
	hdr = headerSize(nm.Header) // the reason may be shorter now
	if err := checkSize(nm, hdr, limit, 0); err != nil {
		return err
	}
	if err := checkHeaders(hdr, 0); err != nil {
		return err
	}
	ctx, cancel := e.bound(ctx)
	defer cancel()
	err = e.retry(ctx, topic, func(ctx context.Context) error {
		ack, err := e.publishOne(ctx, topic, nm)
		if err != nil || !ack.Duplicate {
			return err
		}
		stored, err := e.confirmStored(ctx, ack, nm.Header.Get(nats.MsgIdHdr))
		if err != nil || stored {
			return err
		}
		// The id is in the stream's duplicate window, but the message it
		// named is gone (an operator deleted or purged it): publish again
		// under an id never used.
		fresh := id + ":" + watermill.NewShortUUID()
		x.s.log.Warn("natsjs: dead letter's id answered as a duplicate of a message no longer stored; publishing it under a fresh id",
			slog.String("id", x.d.ID),
			slog.String("dead_letter_topic", topic),
			slog.String("dead_letter_id", fresh))
		nm.Header.Set(nats.MsgIdHdr, fresh)
		ack, err = e.publishOne(ctx, topic, nm)
		if err == nil && ack.Duplicate {
			err = fmt.Errorf("natsjs: dead letter under fresh id %q answered as a duplicate", fresh)
		}
		return err
	})
	if err != nil {
		return err
	}
	delivery.LogDeadLettered(x.s.log, pkg, x.d, nm.Header.Get(relay.MetadataReason), topic)
	return nil
}

// confirmStored reports whether the message a duplicate answer ack points
// to is still in its stream with Nats-Msg-Id id. JetStream answers a
// duplicate for every id in the stream's duplicate window, even when the
// message it names was deleted since, and its answer then names the first
// message's sequence (nats-server v2.15.2). A message that cannot be read
// for another reason is reported as an error, and the dead letter is tried
// again later.
func (e *engine) confirmStored(ctx context.Context, ack *jetstream.PubAck, id string) (bool, error) {
	stream, err := e.js.Stream(ctx, ack.Stream)
	if err != nil {
		return false, fmt.Errorf("confirm the stored dead letter: %w", err)
	}
	raw, err := stream.GetMsg(ctx, ack.Sequence)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("confirm the stored dead letter: %w", err)
	}
	return raw.Header.Get(nats.MsgIdHdr) == id, nil
}

// deadLetterIDPrefix starts every dead letter's Nats-Msg-Id.
const deadLetterIDPrefix = "relay-dead-letter:"

// deadLetterID is the Nats-Msg-Id of the dead letter of x's message: group,
// stream, stream sequence and the time the server stored the message. The
// sequence alone is not unique for ever: when the stream is deleted and
// created again (an operator's `nats stream rm`, then relay) sequences restart
// at 1, and a new poison message would get an old dead letter's id and be
// dropped as a duplicate inside the dead-letter stream's duplicate window.
// The stored time tells the two apart; a redelivery of the same stored message
// keeps it, so its repeated dead-lettering is still de-duplicated. Stream and
// consumer names are at most 64 bytes: the id stays short.
func (x *settler) deadLetterID() string {
	var stored time.Time
	if md, err := x.msg.Metadata(); err == nil {
		stored = md.Timestamp
	}
	return deadLetterID(x.s.e.cfg.group, x.s.topic, x.d.ID, stored)
}

// deadLetterID is the dead letter's Nats-Msg-Id of the message of stream
// sequence seq on topic, stored at stored (zero when unknown), for group.
func deadLetterID(group, topic, seq string, stored time.Time) string {
	id := deadLetterIDPrefix + ConsumerName(group) + ":" + StreamName(topic) + ":" + seq
	if !stored.IsZero() {
		id += ":" + strconv.FormatInt(stored.UnixNano(), 36)
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
