package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/retrier"
)

// Meter counts, per topic, the messages published and the deliveries made
// (redeliveries included) by the metered values that share it. It is safe for
// concurrent use.
type Meter struct {
	mu        sync.Mutex
	published map[string]int
	delivered map[string]int
}

// NewMeter returns a meter with every count at zero.
func NewMeter() *Meter {
	return &Meter{published: map[string]int{}, delivered: map[string]int{}}
}

// Counts returns the messages published to topic and the deliveries of its
// messages so far.
func (m *Meter) Counts(topic string) (published, delivered int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.published[topic], m.delivered[topic]
}

func (m *Meter) add(counts map[string]int, topic string, n int) {
	m.mu.Lock()
	counts[topic] += n
	m.mu.Unlock()
}

// Broker is the byte face of the metered backend: a [relay.Broker] that counts
// on a [Meter] what goes through the broker it wraps, and changes nothing
// else. Every point of the contract is the wrapped broker's to keep; the
// wrapper's job is not to break any, which is what the conformance suite
// checks.
type Broker struct {
	inner relay.Broker
	meter *Meter
}

var (
	_ relay.Broker          = (*Broker)(nil)
	_ retrier.NativeRetrier = (*Broker)(nil)
)

// NewBroker returns a Broker counting on m what goes through inner. It takes
// ownership of inner: Close closes it.
func NewBroker(inner relay.Broker, m *Meter) *Broker { return &Broker{inner: inner, meter: m} }

// Publish publishes through the wrapped broker and counts the message once it
// is stored. Errors are the wrapped broker's, unchanged, so that errors.Is
// still finds relay.ErrInvalidTopic, relay.ErrClosed and ctx.Err().
func (b *Broker) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := b.inner.Publish(ctx, topic, payload); err != nil {
		return err
	}
	b.meter.add(b.meter.published, topic, 1)
	return nil
}

// Subscribe subscribes handler through the wrapped broker, counting each
// delivery. The handler's error goes back unchanged, so that the wrapped
// broker still sees relay.ErrPermanent, and a panic is left to the wrapped
// broker to recover.
func (b *Broker) Subscribe(topic string, handler relay.Handler) error {
	if handler == nil {
		// Wrapping nil would hide it from the wrapped broker, which must
		// return relay.ErrNilHandler.
		return b.inner.Subscribe(topic, nil)
	}
	return b.inner.Subscribe(topic, func(payload []byte) error {
		b.meter.add(b.meter.delivered, topic, 1)
		return handler(payload)
	})
}

// Close closes the wrapped broker.
func (b *Broker) Close() error { return b.inner.Close() }

// HandlesRetries reports what the wrapped broker reports, so that retrier.New
// neither adds a second retry loop to a native broker nor leaves a plain one
// without retries.
func (b *Broker) HandlesRetries() bool {
	nr, ok := b.inner.(retrier.NativeRetrier)
	return ok && nr.HandlesRetries()
}

// Publisher is the Watermill face of the metered backend for publishing.
type Publisher struct {
	inner message.Publisher
	meter *Meter
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher counting on m what goes through inner. It
// takes ownership of inner: Close closes it.
func NewPublisher(inner message.Publisher, m *Meter) *Publisher {
	return &Publisher{inner: inner, meter: m}
}

// Publish publishes msgs through the wrapped publisher and counts them once
// they are stored.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.inner.Publish(topic, msgs...); err != nil {
		return err
	}
	p.meter.add(p.meter.published, topic, len(msgs))
	return nil
}

// Close closes the wrapped publisher.
func (p *Publisher) Close() error { return p.inner.Close() }

// Subscriber is the Watermill face of the metered backend for consuming.
type Subscriber struct {
	inner message.Subscriber
	meter *Meter

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // the forwarding goroutines; added to under mu while open
}

var _ message.Subscriber = (*Subscriber)(nil)

// NewSubscriber returns a Subscriber counting on m what goes through inner. It
// takes ownership of inner: Close closes it.
func NewSubscriber(inner message.Subscriber, m *Meter) *Subscriber {
	return &Subscriber{inner: inner, meter: m}
}

// Subscribe subscribes through the wrapped subscriber and forwards its
// messages, counting each, on a channel of its own. That channel is closed
// once the wrapped one is (on Close, or when ctx is done).
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("metered: subscribe %q: %w", topic, relay.ErrClosed)
	}
	s.wg.Add(1) // under mu, so that Close's Wait never races it
	s.mu.Unlock()
	in, err := s.inner.Subscribe(ctx, topic)
	if err != nil {
		s.wg.Done()
		return nil, err
	}
	out := make(chan *message.Message)
	go func() {
		defer s.wg.Done()
		defer close(out)
		for msg := range in {
			s.meter.add(s.meter.delivered, topic, 1)
			select {
			case out <- msg:
			case <-msg.Context().Done():
				// The subscription is ending and nobody took the message:
				// drop it unacked, and the wrapped subscriber keeps it for
				// redelivery. Without this case, Close would wait forever
				// for a reader that has gone. (relay's subscribers end a
				// message's context when its subscription stops.)
			}
		}
	}()
	return out, nil
}

// Close closes the wrapped subscriber, which closes its channels, and returns
// once every forwarding goroutine has closed its own. It is idempotent.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.inner.Close()
	s.wg.Wait()
	return err
}
