package redisstreams

import (
	"context"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/wm"
)

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)

// Subscriber is the Watermill face for consuming: a message.Subscriber over
// the same engine as [Broker], so retries, dead letters, claims and shutdown
// behave the same. Its methods are safe for concurrent use.
type Subscriber struct {
	e *engine

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

// NewSubscriber returns a Subscriber that uses client. It returns an error
// wrapping [relay.ErrInvalidOption] when client is nil or an option is out of
// range. The caller keeps ownership of client.
func NewSubscriber(client redis.UniversalClient, opts ...Option) (*Subscriber, error) {
	e, err := newEngine(client, opts)
	if err != nil {
		return nil, err
	}
	return &Subscriber{e: e, closing: make(chan struct{})}, nil
}

// Subscribe creates the consumer group on topic's stream unless it exists,
// then sends the stream's entries on the returned channel, one at a time per
// worker ([WithConcurrency]), until ctx is done or Close is called; then the
// channel is closed. msg.Ack() acknowledges an entry; msg.Nack() redelivers
// it after the backoff, up to the max deliver ([WithMaxDeliver]), after which
// it goes to the dead-letter topic. A message neither acked nor nacked when
// the subscription stops stays pending. Each subscription keeps one blocking
// XREADGROUP, as [Broker.Subscribe] says (connections and pool size). It
// returns an error wrapping [relay.ErrInvalidTopic] or [relay.ErrClosed], or
// the Redis error of creating the group.
// A nil ctx returns an error wrapping [relay.ErrNilContext].
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if ctx == nil {
		return nil, fmt.Errorf("%s: subscribe %q: %w", pkg, topic, relay.ErrNilContext)
	}
	if err := relay.ValidateTopic(topic); err != nil {
		return nil, fmt.Errorf("%s: subscribe %q: %w", pkg, topic, err)
	}
	// The lock orders wm.Subscribe's wg.Add before Close's wg.Wait.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("%s: subscribe %q: %w", pkg, topic, relay.ErrClosed)
	}
	out, err := wm.Subscribe(ctx, s.closing, &s.wg, func(process wm.Process) (func(), error) {
		return s.e.subscribe(topic, process)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: subscribe %q: %w", pkg, topic, err)
	}
	return out, nil
}

// SubscribeInitialize creates topic's stream and the subscriber's consumer
// group unless they exist, without consuming, so that a later Subscribe of the
// group gets everything published from now on (and, with [WithStartID]'s
// default [StartOldest], everything the stream holds), even with
// [StartNewest]. It creates the group as Subscribe does, with one XGROUP
// CREATE … MKSTREAM bounded by 10 seconds, and reads nothing. It returns an
// error wrapping [relay.ErrInvalidTopic] (also when the topic's dead-letter
// topic would be invalid), [relay.ErrClosed] after Close, or the Redis error
// of creating the group.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return fmt.Errorf("%s: subscribe initialize %q: %w", pkg, topic, err)
	}
	if err := s.e.cfg.policy.CheckTopic(topic); err != nil {
		return fmt.Errorf("%s: subscribe initialize %q: %w", pkg, topic, err)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed || s.e.subs.Closed() {
		return fmt.Errorf("%s: subscribe initialize %q: %w", pkg, topic, relay.ErrClosed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := s.e.ensureGroup(ctx, streamKey(topic)); err != nil {
		return fmt.Errorf("%s: subscribe initialize %q: %w", pkg, topic, err)
	}
	s.e.tel.WatchLag(topic, s.e.cfg.group)
	return nil
}

// Close is Shutdown(context.Background()): it waits for the running handlers
// without bound and must not be called from inside a handler (the goroutine
// that reads a message channel and has not acked or nacked yet). It always
// returns nil.
func (s *Subscriber) Close() error { return s.Shutdown(context.Background()) }

// Shutdown stops every subscription as [Broker.Shutdown] does, closes their
// channels and returns once they are all stopped. Messages sent but neither
// acked nor nacked stay pending. When ctx is done first, it stops waiting for
// the messages being handled, as [Broker.Shutdown] does, and returns
// ctx.Err(), wrapped. It is idempotent and safe for concurrent use, and does
// not close the client.
// A nil ctx returns an error wrapping [relay.ErrNilContext], and closes
// nothing.
func (s *Subscriber) Shutdown(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("%s: shutdown: %w", pkg, relay.ErrNilContext)
	}
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	err := s.e.shutdown(ctx)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("%s: shutdown: %w", pkg, err)
	}
	return nil
}
