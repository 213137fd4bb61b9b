package natsjs

import (
	"context"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/lifecycle"
	"github.com/go-relay/relay/internal/wm"
)

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)

// Subscriber is the Watermill face of the JetStream backend for consuming: a
// message.Subscriber over the caller's jetstream.JetStream, on the same
// engine as [Broker]: Ack settles a delivery like a handler's nil, Nack like
// its error. It is safe for concurrent use.
type Subscriber struct {
	e *engine

	// ctx is canceled first thing in Close, to cut short a set-up in
	// progress.
	ctx    context.Context
	cancel context.CancelFunc

	closing chan struct{}  // closed by Shutdown: every channel's subscription stops
	wg      sync.WaitGroup // one per open channel, see wm.Subscribe

	subs *lifecycle.Registry[*running]
}

// NewSubscriber returns a Subscriber that consumes through js, which stays
// the caller's (the Subscriber never closes its connection). It returns an
// error wrapping [relay.ErrInvalidOption] when js is nil or an option is
// invalid. It does not contact the server.
func NewSubscriber(js jetstream.JetStream, opts ...Option) (*Subscriber, error) {
	e, err := newEngine(js, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Subscriber{
		e: e, ctx: ctx, cancel: cancel,
		closing: make(chan struct{}),
		subs:    lifecycle.NewRegistry[*running](),
	}, nil
}

// Subscribe creates or updates the topic's stream and the group's durable
// consumer and returns a channel of the topic's messages; it returns once the
// consumer exists. Up to [WithConcurrency] messages are out at once, each
// waiting for its Ack or Nack: Ack removes it, Nack redelivers it after the
// backoff, and after max deliver it goes to the dead-letter topic. A message
// whose metadata cannot be read goes to the dead-letter topic without being
// sent on the channel.
//
// When ctx is done or the Subscriber is closed, fetching stops, messages not
// acked yet are returned to JetStream for redelivery, and the channel is
// closed. It returns an error wrapping [relay.ErrInvalidTopic] (also when
// the topic's dead-letter topic is not a valid topic), [relay.ErrClosed], or
// the server's error when set-up fails.
// A nil ctx returns an error wrapping [relay.ErrNilContext].
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if ctx == nil {
		return nil, fmt.Errorf("natsjs: subscribe %q: %w", topic, relay.ErrNilContext)
	}
	if err := relay.ValidateTopic(topic); err != nil {
		return nil, fmt.Errorf("natsjs: subscribe %q: %w", topic, err)
	}
	if err := s.e.cfg.policy.CheckTopic(topic); err != nil {
		return nil, fmt.Errorf("natsjs: subscribe %q: %w", topic, err)
	}
	leave, err := s.subs.Enter()
	if err != nil {
		return nil, fmt.Errorf("natsjs: subscribe %q: %w", topic, err)
	}
	defer leave()
	out, err := wm.Subscribe(ctx, s.closing, &s.wg, func(process wm.Process) (func(), error) {
		setupCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(s.ctx, cancel)()
		r, err := s.e.subscribe(setupCtx, topic, func(ctx context.Context, d *delivery.Delivery, x *settler) {
			x.settle(process(ctx, d))
		})
		if err != nil {
			return nil, err
		}
		if err := s.subs.Add(r); err != nil {
			r.Stop() // Close ran while the consumer was being set up
			return nil, err
		}
		return func() {
			r.Stop()
			s.subs.Remove(r)
		}, nil
	})
	if err != nil {
		if s.ctx.Err() != nil {
			err = relay.ErrClosed
		}
		return nil, fmt.Errorf("natsjs: subscribe %q: %w", topic, err)
	}
	return out, nil
}

// SubscribeInitialize creates or updates the topic's stream and the group's
// consumer without consuming, so that a later Subscribe of the group gets
// everything published from now on (and everything the stream holds). It
// returns the same errors as Subscribe, [relay.ErrClosed] after Close.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return fmt.Errorf("natsjs: subscribe initialize %q: %w", topic, err)
	}
	if err := s.e.cfg.policy.CheckTopic(topic); err != nil {
		return fmt.Errorf("natsjs: subscribe initialize %q: %w", topic, err)
	}
	if s.subs.Closed() {
		return fmt.Errorf("natsjs: subscribe initialize %q: %w", topic, relay.ErrClosed)
	}
	ctx, cancel := s.e.bound(s.ctx)
	defer cancel()
	if _, err := s.e.setup(ctx, topic); err != nil {
		if s.ctx.Err() != nil {
			err = relay.ErrClosed
		}
		return fmt.Errorf("natsjs: subscribe initialize %q: %w", topic, err)
	}
	s.e.tel.WatchLag(topic, s.e.cfg.group)
	return nil
}

// Close is Shutdown without a bound: it stops every subscription, returns
// their unacked messages to JetStream, waits until the messages out on the
// channels are settled and closes all output channels. It does not close the
// connection. It is idempotent and safe for concurrent use: every call
// returns nil once the subscriptions have stopped. Messages out on a channel
// count as not processed once Close starts (an Ack that comes later is too
// late), so Close waits only for settling, such as a dead-letter publish,
// bounded by the request timeout; it must still not be called from a
// goroutine that its own settling waits for. Use [Subscriber.Shutdown] to
// bound the wait.
func (s *Subscriber) Close() error {
	return s.Shutdown(context.Background())
}

// Shutdown is Close that stops waiting once ctx is done, and then returns an
// error wrapping ctx's error. Deliveries not settled by then stay pending:
// their leases are no longer extended, so JetStream redelivers them to the
// group after the ack wait. A later Close or Shutdown waits again.
// A nil ctx returns an error wrapping [relay.ErrNilContext], and closes
// nothing.
func (s *Subscriber) Shutdown(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("natsjs: shutdown: %w", relay.ErrNilContext)
	}
	begin := func() {
		s.cancel()
		close(s.closing)
		s.e.tel.Close()
	}
	if err := s.subs.Shutdown(ctx, begin, s.wg.Wait); err != nil {
		return fmt.Errorf("natsjs: shutdown: %w", err)
	}
	return nil
}
