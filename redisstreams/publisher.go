package redisstreams

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/wm"
)

var _ message.Publisher = (*Publisher)(nil)

// Publisher is the Watermill face for publishing: a message.Publisher that
// writes the wire format of watermill-redisstream, so that its subscribers
// and ours read the entries. Its methods are safe for concurrent use.
type Publisher struct {
	e *engine
}

// NewPublisher returns a Publisher that uses client. Of the options, only
// [WithMaxLen] concerns it; the others are checked and ignored. It returns an
// error wrapping [relay.ErrInvalidOption] when client is nil or an option is
// out of range. The caller keeps ownership of client.
func NewPublisher(client redis.UniversalClient, opts ...Option) (*Publisher, error) {
	e, err := newEngine(client, opts)
	if err != nil {
		return nil, err
	}
	return &Publisher{e: e}, nil
}

// Publish appends messages to the stream named topic, with their UUIDs and
// metadata, in one pipeline, and returns once Redis answered every XADD. It
// honours each message's context (msg.Context()): when one is done already,
// Publish stores none of the messages and returns that context's error,
// wrapped; a single message's context also bounds the wait for Redis. On
// another error some of the messages may have been stored. It returns an error
// wrapping [relay.ErrInvalidTopic], [relay.ErrPayloadTooLarge] when a
// message's payload, UUID or msgpack-encoded metadata is longer than the
// server's proto-max-bulk-len (see the package doc, Limits; none of the
// messages is then stored), [relay.ErrInvalidDelay] when a message's
// [relay.MetadataDelayedUntil] is not RFC 3339 or further ahead than
// [WithMaxDelay] (none of the messages is then stored), [relay.ErrClosed]
// after Close, a context error, or the Redis error. A message with
// [relay.MetadataDelayedUntil] is delivered no earlier than that time (see
// the package doc, Delayed delivery).
func (p *Publisher) Publish(topic string, messages ...*message.Message) error {
	if err := p.e.validTopic(topic); err != nil {
		return fmt.Errorf("%s: publish %q: %w", pkg, topic, err)
	}
	ctx := context.Background()
	msgs := make([]delivery.Message, len(messages))
	ctxs := make([]context.Context, len(messages))
	due := make([]time.Time, len(messages))
	delayed := false
	now := time.Now()
	for i, m := range messages {
		if err := m.Context().Err(); err != nil {
			return fmt.Errorf("%s: publish %q: message %s: %w", pkg, topic, m.UUID, err)
		}
		at, ok, err := delivery.DueTime(m.Metadata)
		if err == nil && ok {
			err = delivery.CheckDue(at, now, p.e.cfg.maxDelay)
		}
		if err != nil {
			return fmt.Errorf("%s: publish %q: message %s: %w", pkg, topic, m.UUID, err)
		}
		delayed = delayed || at.After(now)
		msgs[i], due[i], ctxs[i] = wm.FromWatermill(m), at, m.Context()
	}
	if len(messages) == 1 {
		ctx = messages[0].Context()
	}
	if delayed {
		if err := p.e.publishAt(ctx, ctxs, topic, msgs, due); err != nil {
			return fmt.Errorf("%s: publish %q: %w", pkg, topic, err)
		}
		return nil
	}
	if err := p.e.publish(ctx, ctxs, topic, msgs...); err != nil {
		return fmt.Errorf("%s: publish %q: %w", pkg, topic, err)
	}
	return nil
}

// Close makes later Publish calls return [relay.ErrClosed]. It is idempotent
// and does not close the client.
func (p *Publisher) Close() error { return p.e.shutdown(context.Background()) }
