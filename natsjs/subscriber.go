package natsjs

import (
	"context"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
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

	// mu is held for reading while a Subscribe call registers its channel,
	// and for writing by Close, so that no subscription starts after Close.
	mu      sync.RWMutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup // one per open channel, see wm.Subscribe
	done    chan struct{}
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
	return &Subscriber{e: e, ctx: ctx, cancel: cancel, closing: make(chan struct{}), done: make(chan struct{})}, nil
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
// closed. It returns an error wrapping [relay.ErrInvalidTopic],
// [relay.ErrClosed], or the server's error when set-up fails.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := relay.ValidateTopic(topic); err != nil {
		return nil, fmt.Errorf("natsjs: subscribe %q: %w", topic, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("natsjs: subscribe %q: %w", topic, relay.ErrClosed)
	}
	out, err := wm.Subscribe(ctx, s.closing, &s.wg, func(process wm.Process) (func(), error) {
		setupCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(s.ctx, cancel)()
		return s.e.subscribe(setupCtx, topic, process)
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
// returns the same errors as Subscribe.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return fmt.Errorf("natsjs: subscribe initialize %q: %w", topic, err)
	}
	ctx, cancel := s.e.bound(s.ctx)
	defer cancel()
	if _, err := s.e.setup(ctx, topic); err != nil {
		return fmt.Errorf("natsjs: subscribe initialize %q: %w", topic, err)
	}
	return nil
}

// Close stops every subscription, returns their unacked messages to
// JetStream, waits until their handlers' messages are settled and closes all
// output channels. It does not close the connection. It is idempotent and
// safe for concurrent use: every call returns nil once the first has
// finished.
func (s *Subscriber) Close() error {
	s.cancel()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()

	s.wg.Wait()
	close(s.done)
	return nil
}
