package memory

import (
	"context"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/wm"
)

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)

// Subscriber is the Watermill face of the memory backend for consuming: a
// message.Subscriber on a [Hub], running on the same engine as [Broker]. All
// its subscriptions belong to one consumer group ([WithGroup]). It is safe for
// concurrent use.
type Subscriber struct {
	e *engine

	mu      sync.RWMutex // held for reading by Subscribe, so Close waits for it
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup // the goroutines that close output channels

	closeOnce sync.Once
	stopped   chan struct{} // closed once every subscription stopped after Close
}

// NewSubscriber returns a subscriber on hub. Options: [WithGroup],
// [WithConcurrency], [WithMaxDeliver], [WithBackoff], [WithDeadLetterTopic],
// [WithLogger], [WithNativeRetries]. A nil hub, a [WithHub] naming another
// hub, or an invalid option value returns an error wrapping
// [relay.ErrInvalidOption].
func NewSubscriber(hub *Hub, opts ...Option) (*Subscriber, error) {
	cfg, err := faceConfig(hub, opts)
	if err != nil {
		return nil, err
	}
	return &Subscriber{e: newEngine(cfg), closing: make(chan struct{}), stopped: make(chan struct{})}, nil
}

// Subscribe joins the subscriber's group on topic (creating it, if new, at
// the oldest message still stored) and returns the channel its messages come
// on. Each call is one more competing subscription of the group, with up to
// [WithConcurrency] messages out at once. Each message carries the UUID and
// metadata it was published with and a context that ends once it is acked or
// nacked. Ack removes it for the group; Nack redelivers it after the backoff
// ([WithBackoff]), and after [WithMaxDeliver] deliveries it goes to the
// dead-letter topic (unless WithNativeRetries(false)).
//
// When ctx is done or the subscriber is closed, the channel is closed; a
// message sent and not acked by then stays on the hub for redelivery to the
// group. It returns an error wrapping [relay.ErrInvalidTopic] (also when the
// topic's dead-letter topic is not a valid topic, unless
// WithNativeRetries(false)) or [relay.ErrClosed].
// A nil ctx returns an error wrapping [relay.ErrNilContext].
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if ctx == nil {
		return nil, fmt.Errorf("memory: subscribe %q: %w", topic, relay.ErrNilContext)
	}
	if err := relay.ValidateTopic(topic); err != nil {
		return nil, fmt.Errorf("memory: subscribe %q: %w", topic, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("memory: subscribe %q: %w", topic, relay.ErrClosed)
	}
	out, err := wm.Subscribe(ctx, s.closing, &s.wg, func(process wm.Process) (func(), error) {
		sub, err := s.e.subscribe(topic, process)
		if err != nil {
			return nil, err
		}
		return sub.Stop, nil
	})
	if err != nil {
		return nil, fmt.Errorf("memory: subscribe %q: %w", topic, err)
	}
	return out, nil
}

// SubscribeInitialize creates the subscriber's group on topic without
// subscribing, so that the topic keeps every message published from now on for
// the group even while no subscription runs. It returns an error wrapping
// [relay.ErrInvalidTopic] or [relay.ErrClosed].
func (s *Subscriber) SubscribeInitialize(topic string) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return fmt.Errorf("memory: subscribe initialize %q: %w", topic, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("memory: subscribe initialize %q: %w", topic, relay.ErrClosed)
	}
	s.e.join(topic)
	return nil
}

// Close is Shutdown(context.Background()): it stops every subscription and
// closes every output channel. A message sent and not acked or nacked by then
// counts as not processed: its context ends, a later Ack has no effect, and
// it stays on the hub for the group's other or later subscriptions, at once
// and without counting as a delivery. Close leaves no goroutine behind and
// does not affect the hub. It is idempotent and safe to call concurrently:
// every call returns nil once the first has finished.
//
// Close waits, without bound, for the subscriptions' own goroutines to hand
// their messages back and settle the acks and nacks that came before it. It
// does not wait for the code that reads the channels, since a message out
// counts as not processed once Close starts: unlike [Broker.Close], it may be
// called from the goroutine that handles a message. [Subscriber.Shutdown]
// bounds the wait.
func (s *Subscriber) Close() error {
	return s.Shutdown(context.Background())
}

// Shutdown is Close that stops waiting once ctx is done, and then returns an
// error wrapping ctx.Err(). Everything else happens as with Close, at once:
// Subscribe returns [relay.ErrClosed], no new message is taken and messages
// out on the channels count as not processed. A delivery whose settling is
// still running when Shutdown returns stays in flight, and no other
// subscription gets its message until it is settled; the output channel
// closes after that. A later Close or Shutdown waits again. Shutdown is
// idempotent and safe to call concurrently and with Close.
// A nil ctx returns an error wrapping [relay.ErrNilContext], and closes
// nothing.
func (s *Subscriber) Shutdown(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("memory: shutdown: %w", relay.ErrNilContext)
	}
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.closing)
		go func() {
			defer close(s.stopped)
			s.e.close()
			s.wg.Wait()
		}()
	})
	select {
	case <-s.stopped:
		return nil
	default:
	}
	select {
	case <-s.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("memory: shutdown: %w", ctx.Err())
	}
}
