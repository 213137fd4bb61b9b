package memory

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

var (
	_ relay.Broker     = (*Broker)(nil)
	_ relay.Shutdowner = (*Broker)(nil)
	_ relay.Shutdowner = (*Subscriber)(nil)
)

// Broker is the byte-handler face of the memory backend: a [relay.Broker] on a
// [Hub]. Its subscriptions form one consumer group ([WithGroup]). It is safe
// for concurrent use. Close it to stop its subscriptions; closing it does not
// affect the hub or the other values on it.
type Broker struct {
	e *engine
}

// NewBroker returns a broker on the hub of [WithHub], or on a private hub of
// its own without it, so that the zero configuration works. Options: [WithHub],
// [WithGroup], [WithConcurrency], [WithMaxDeliver], [WithBackoff],
// [WithDeadLetterTopic], [WithLogger], [WithNativeRetries],
// [WithTracerProvider], [WithMeterProvider], [WithPropagators]. An invalid option
// value returns an error wrapping [relay.ErrInvalidOption].
func NewBroker(opts ...Option) (*Broker, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if cfg.hub == nil {
		cfg.hub = makeHub(hubConfig{capacity: DefaultCapacity})
	}
	return &Broker{e: newEngine(cfg)}, nil
}

// Publish stores a copy of payload on topic, with a new UUID and no metadata
// but the trace context of ctx (see WithPropagators);
// a nil payload is delivered as an empty one. It returns once the message is
// stored on the hub (that is all durability means in memory), blocking while
// the topic is full ([WithCapacity]) until space frees, ctx is done (an error
// wrapping ctx.Err()) or the broker is closed. It returns an error wrapping
// [relay.ErrInvalidTopic] for a topic that [relay.ValidateTopic] rejects, and
// [relay.ErrClosed] after Close. The memory backend has no payload limit.
// A nil ctx returns an error wrapping [relay.ErrNilContext], and nothing is
// sent.
func (b *Broker) Publish(ctx context.Context, topic string, payload []byte) error {
	if ctx == nil {
		return fmt.Errorf("memory: publish %q: %w", topic, relay.ErrNilContext)
	}
	t, err := b.e.hub.validTopic(topic)
	if err != nil {
		return fmt.Errorf("memory: publish %q: %w", topic, err)
	}
	if b.e.isClosed() {
		return fmt.Errorf("memory: publish %q: %w", topic, relay.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: publish %q: %w", topic, err)
	}
	msg := delivery.Message{UUID: watermill.NewUUID(), Payload: append([]byte{}, payload...)}
	span, md := b.e.tel.StartPublish(ctx, topic, msg.UUID, nil)
	msg.Metadata = md
	err = t.publish(ctx, b.e.closing, msg)
	span.End(err)
	if err != nil {
		return fmt.Errorf("memory: publish %q: %w", topic, err)
	}
	return nil
}

// Subscribe joins the broker's group on topic and delivers its messages to
// handler, up to [WithConcurrency] at once, until Close. The group is created
// (if it is new) before Subscribe returns, starting at the oldest message
// still stored on the topic. Each call is one more competing subscription of
// the group. The handler gets its own copy of the payload.
//
// It returns an error wrapping [relay.ErrInvalidTopic] (also when the topic's
// dead-letter topic, see [WithDeadLetterTopic], is not a valid topic, unless
// WithNativeRetries(false)), [relay.ErrNilHandler] or [relay.ErrClosed].
func (b *Broker) Subscribe(topic string, handler relay.Handler) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return fmt.Errorf("memory: subscribe %q: %w", topic, err)
	}
	if handler == nil {
		return fmt.Errorf("memory: subscribe %q: %w", topic, relay.ErrNilHandler)
	}
	h := func(p []byte) error {
		if p == nil {
			p = []byte{} // Call's copy of an empty payload is nil; Publish promises an empty one
		}
		return handler(p)
	}
	process := func(_ context.Context, d *delivery.Delivery) error {
		// Call gives the handler a copy of the payload: a handler that writes
		// to it does not change what other groups and redeliveries get. A
		// handler that calls runtime.Goexit ends the worker inside Call; the
		// worker settles the delivery and starts its replacement.
		return delivery.Call(h, d.Message.Payload)
	}
	if _, err := b.e.subscribe(topic, process); err != nil {
		return fmt.Errorf("memory: subscribe %q: %w", topic, err)
	}
	return nil
}

// Close is Shutdown(context.Background()): it stops taking messages, waits
// for the running handlers to return and settles their deliveries (ack,
// redelivery after the backoff, or dead letter); messages taken and not
// handled stay on the hub for the group's other or later subscriptions, at
// once. Publish calls blocked on a full topic return [relay.ErrClosed]. Close
// leaves no goroutine behind. It is idempotent and safe to call concurrently:
// every call returns nil once the first has finished.
//
// Close waits for the running handlers without bound: a handler that never
// returns keeps Close waiting forever, and Close must not be called from
// inside a handler, which would wait for itself. Use [Broker.Shutdown] with a
// deadline to bound the wait.
func (b *Broker) Close() error {
	return b.Shutdown(context.Background())
}

// Shutdown is Close that stops waiting for the running handlers once ctx is
// done, and then returns an error wrapping ctx.Err(). Everything else happens
// as with Close, at once: Publish and Subscribe return [relay.ErrClosed], no
// new message is taken, blocked publishes return. A handler still running
// when Shutdown returns keeps its delivery in flight: no other subscription
// gets the message while it runs. When it returns, its delivery is settled
// as usual: acknowledged on success, otherwise handed back to the group for
// redelivery after the backoff or dead-lettered, as its error and attempt
// decide; then its goroutine ends. A later Close or Shutdown waits for those
// handlers again. Shutdown is idempotent and safe to call concurrently and
// with Close.
// A nil ctx returns an error wrapping [relay.ErrNilContext], and closes
// nothing.
func (b *Broker) Shutdown(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("memory: shutdown: %w", relay.ErrNilContext)
	}
	if err := b.e.shutdown(ctx); err != nil {
		return fmt.Errorf("memory: shutdown: handlers still running: %w", err)
	}
	return nil
}

// HandlesRetries reports whether the broker applies max deliver and dead
// letters itself: true unless it was made with WithNativeRetries(false). The
// retrier package asks it (retrier.NativeRetrier) and adds its own retry loop
// only when it returns false.
func (b *Broker) HandlesRetries() bool { return b.e.cfg.native }
