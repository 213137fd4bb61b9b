package natsjs

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/lifecycle"
)

var (
	_ relay.Broker     = (*Broker)(nil)
	_ relay.Shutdowner = (*Broker)(nil)
	_ relay.Shutdowner = (*Subscriber)(nil)
)

// Broker is the byte-handler face of the JetStream backend: a [relay.Broker]
// over the caller's jetstream.JetStream. Its subscriptions belong to one
// consumer group ([WithGroup]). It is safe for concurrent use.
type Broker struct {
	e *engine

	// ctx is canceled by Close, to cut short a Subscribe setting up.
	ctx    context.Context
	cancel context.CancelFunc

	subs *lifecycle.Registry[*running]
}

// NewBroker returns a Broker that publishes and consumes through js. js is the
// caller's: the Broker never closes its connection, and configures nothing on
// it. It returns an error wrapping [relay.ErrInvalidOption] when js is nil or
// an option is invalid. It does not contact the server.
func NewBroker(js jetstream.JetStream, opts ...Option) (*Broker, error) {
	e, err := newEngine(js, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Broker{e: e, ctx: ctx, cancel: cancel, subs: lifecycle.NewRegistry[*running]()}, nil
}

// HandlesRetries reports true: the Broker redelivers failed messages with
// backoff and dead-letters them itself, so retrier.New adds nothing to it.
func (b *Broker) HandlesRetries() bool { return true }

// Publish stores payload on topic and returns once JetStream acknowledged it
// (the message is durable then). The topic's stream is created on the first
// publish, so a group that subscribes later still gets the message. Each
// message gets a new UUID, which is also its Nats-Msg-Id.
//
// Publish waits at most until ctx is done, or for the request timeout
// ([WithRequestTimeout]) when ctx has no deadline; transient failures
// (disconnection, server restart) are retried within that time. Concurrent
// calls are pipelined on the connection, each waiting for its own
// acknowledgement. It returns an error wrapping [relay.ErrInvalidTopic],
// [relay.ErrPayloadTooLarge] (before anything is sent: payload plus headers
// above the server's max_payload less [DeadLetterReserve], the room kept for
// the metadata of a dead letter), [relay.ErrClosed] after Close, or ctx's
// error.
// A nil ctx returns an error wrapping [relay.ErrNilContext], and nothing is
// sent.
func (b *Broker) Publish(ctx context.Context, topic string, payload []byte) error {
	if ctx == nil {
		return fmt.Errorf("natsjs: publish %q: %w", topic, relay.ErrNilContext)
	}
	if err := b.usable(topic); err != nil {
		return fmt.Errorf("natsjs: publish %q: %w", topic, err)
	}
	m := delivery.Message{UUID: watermill.NewUUID(), Payload: payload}
	if err := b.e.publish([]context.Context{ctx}, topic, []delivery.Message{m}); err != nil {
		return fmt.Errorf("natsjs: publish %q: %w", topic, err)
	}
	return nil
}

// Subscribe creates or updates the topic's stream and the group's durable
// consumer, then delivers the topic's messages to handler in the background,
// up to [WithConcurrency] at once, until Close. It returns once the consumer
// exists, so everything the stream holds, and everything published later, is
// delivered. Several Subscribe calls on one topic compete for its messages.
//
// A handler error, a panic, a runtime.Goexit, or an error wrapping
// [relay.ErrPermanent] is settled as the package documentation says.
// Subscribe returns an error wrapping [relay.ErrInvalidTopic] (also when the
// topic's dead-letter topic, see [WithDeadLetterTopic], is not a valid
// topic), [relay.ErrNilHandler], [relay.ErrClosed], or the server's error
// when the stream or consumer cannot be set up within the request timeout.
func (b *Broker) Subscribe(topic string, handler relay.Handler) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return fmt.Errorf("natsjs: subscribe %q: %w", topic, err)
	}
	if err := b.e.cfg.policy.CheckTopic(topic); err != nil {
		return fmt.Errorf("natsjs: subscribe %q: %w", topic, err)
	}
	if handler == nil {
		return fmt.Errorf("natsjs: subscribe %q: %w", topic, relay.ErrNilHandler)
	}
	leave, err := b.subs.Enter()
	if err != nil {
		return fmt.Errorf("natsjs: subscribe %q: %w", topic, err)
	}
	defer leave()
	r, err := b.e.subscribe(b.ctx, topic, func(_ context.Context, d *delivery.Delivery, x *settler) {
		delivery.CallSettled(handler, d.Message.Payload, x.settle)
	})
	if err != nil {
		if b.ctx.Err() != nil {
			err = relay.ErrClosed
		}
		return fmt.Errorf("natsjs: subscribe %q: %w", topic, err)
	}
	if err := b.subs.Add(r); err != nil {
		r.Stop() // Close ran while the consumer was being set up
		return fmt.Errorf("natsjs: subscribe %q: %w", topic, err)
	}
	return nil
}

// Close is Shutdown without a bound: it stops fetching on every
// subscription, waits for running handlers to return and settles their
// deliveries (ack, or redelivery after backoff, or dead letter); messages
// fetched but not yet handled are returned to JetStream for immediate
// redelivery to the group. Close leaves no goroutine of the Broker and does
// not close the connection. It is idempotent and safe for concurrent use:
// every call returns nil once the subscriptions have stopped.
//
// Close waits for the running handlers without bound: a handler that never
// returns keeps Close waiting forever, and Close must not be called from
// inside a handler, which would wait for itself. Use [Broker.Shutdown] with a
// deadline to bound the wait.
func (b *Broker) Close() error {
	return b.Shutdown(context.Background())
}

// Shutdown is Close that stops waiting for running handlers once ctx is
// done, and then returns an error wrapping ctx's error. The deliveries of the
// handlers still running then stay pending: relay stops extending their
// leases, so JetStream redelivers them to the group after the ack wait
// ([WithAckWait]), unless the handler returns first and its outcome is
// settled as usual. The handlers keep running in the background; a later
// Close or Shutdown waits for them again. Shutdown is safe for concurrent use
// and with Close.
// A nil ctx returns an error wrapping [relay.ErrNilContext], and closes
// nothing.
func (b *Broker) Shutdown(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("natsjs: shutdown: %w", relay.ErrNilContext)
	}
	begin := func() {
		b.cancel()
		b.e.tel.Close()
	}
	if err := b.subs.Shutdown(ctx, begin, nil); err != nil {
		return fmt.Errorf("natsjs: shutdown: handlers still running: %w", err)
	}
	return nil
}

func (b *Broker) usable(topic string) error {
	if err := b.e.validTopic(topic); err != nil {
		return err
	}
	if b.subs.Closed() {
		return relay.ErrClosed
	}
	return nil
}
