package natsjs

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/wm"
)

var _ message.Publisher = (*Publisher)(nil)

// Publisher is the Watermill face of the JetStream backend for publishing: a
// message.Publisher over the caller's jetstream.JetStream, writing the same
// wire format as [Broker] and watermill-nats. It is safe for concurrent use.
type Publisher struct {
	e *engine

	mu     sync.Mutex
	closed bool
}

// NewPublisher returns a Publisher that publishes through js, which stays the
// caller's (the Publisher never closes its connection). Options that concern
// consuming are accepted and ignored. It returns an error wrapping
// [relay.ErrInvalidOption] when js is nil or an option is invalid.
func NewPublisher(js jetstream.JetStream, opts ...Option) (*Publisher, error) {
	e, err := newEngine(js, opts)
	if err != nil {
		return nil, err
	}
	return &Publisher{e: e}, nil
}

// Publish stores messages on topic, keeping each one's UUID (also its
// Nats-Msg-Id, so JetStream drops a retried publish of the same message) and
// metadata (as headers). All messages are sent at once and Publish returns
// once JetStream acknowledged every one, or with an error naming each that
// failed; a failure does not stop the others. Each message's Context bounds
// its own wait, limited to the request timeout ([WithRequestTimeout]) when it
// has no deadline.
//
// It returns an error wrapping [relay.ErrInvalidTopic], [relay.ErrClosed],
// [relay.ErrPayloadTooLarge] (before anything is sent) when one message is
// over the server's max_payload less [DeadLetterReserve], or
// [relay.ErrInvalidMetadata] (the same way) for a metadata key that cannot be
// a NATS header, a value that a header would not keep, or metadata beyond
// JetStream's 64 KiB header limit less the dead letter's share of it. A
// message with [relay.MetadataDelayedUntil] is delivered no earlier than that
// time (see the package doc, Delayed delivery); a value that is not RFC 3339,
// or a time further ahead than [WithMaxDelay], returns an error wrapping
// [relay.ErrInvalidDelay] before any of the messages is sent.
func (p *Publisher) Publish(topic string, messages ...*message.Message) error {
	if err := p.usable(topic); err != nil {
		return fmt.Errorf("natsjs: publish %q: %w", topic, err)
	}
	if len(messages) == 0 {
		return nil
	}
	// The common call, one message, keeps these on the stack.
	var ctx1 [1]context.Context
	var msg1 [1]delivery.Message
	var due1 [1]time.Time
	ctxs, msgs, due := ctx1[:], msg1[:], due1[:]
	if len(messages) > 1 {
		ctxs = make([]context.Context, len(messages))
		msgs = make([]delivery.Message, len(messages))
		due = make([]time.Time, len(messages))
	}
	now := time.Now()
	for i, msg := range messages {
		at, ok, err := delivery.DueTime(msg.Metadata)
		if err == nil && ok {
			err = delivery.CheckDue(at, now, p.e.cfg.maxDelay)
		}
		if err != nil {
			return fmt.Errorf("natsjs: publish %q: message %s: %w", topic, msg.UUID, err)
		}
		ctxs[i], msgs[i], due[i] = msg.Context(), wm.FromWatermill(msg), at
	}
	if err := p.e.publishAt(ctxs, topic, msgs, due); err != nil {
		return fmt.Errorf("natsjs: publish %q: %w", topic, err)
	}
	return nil
}

// Close marks the Publisher closed: later Publish calls return
// [relay.ErrClosed]. Publish waits for its acknowledgements, so there is
// nothing to flush; the connection stays open. Close is idempotent and
// always returns nil.
func (p *Publisher) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.e.tel.Close()
	return nil
}

func (p *Publisher) usable(topic string) error {
	if err := p.e.validTopic(topic); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return relay.ErrClosed
	}
	return nil
}
