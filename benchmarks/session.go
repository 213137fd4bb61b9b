package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Faces of a system that the benchmark compares.
const (
	FaceBytes     = "relay-bytes"     // relay's byte-handler face (relay.Broker)
	FaceWatermill = "relay-watermill" // relay's Watermill face
	FacePeer      = "peer"            // the established Watermill adapter
	FaceRaw       = "raw"             // the bare client, the floor
	// FaceRawWire is the bare client doing the wire work relay's format
	// requires per message and nothing else: the floor for relay's code.
	FaceRawWire = "raw-wire"
)

// Faces lists the faces in table order.
var Faces = []string{FaceBytes, FaceWatermill, FacePeer, FaceRaw, FaceRawWire}

// Systems lists the systems in table order.
var Systems = []string{"memory", "redis", "nats"}

// Group is the consumer group every consuming session joins.
const Group = "bench"

// SessionConfig is what a session is opened for.
type SessionConfig struct {
	Topic string
	// Retain is the number of messages a publish-only run stores with no
	// consumer: in-memory backends must be able to hold them.
	Retain int
	// Telemetry, when set, is the OpenTelemetry SDK relay's byte face is
	// given (its WithTracerProvider and WithMeterProvider options).
	Telemetry *Telemetry
}

// Impl is one face of one system.
type Impl struct {
	System, Face string
	// Peer names the library (and version) behind the peer or raw face.
	Peer string
	Open func(ctx context.Context, env *Env, cfg SessionConfig) (Session, error)
}

// Name is "system/face".
func (i Impl) Name() string { return i.System + "/" + i.Face }

// DelayedSession is a session whose backend delays messages: relay's byte
// face on every backend (relay.DelayedPublisher).
type DelayedSession interface {
	Session
	// PublishAt sends one message due at at.
	PublishAt(ctx context.Context, payload []byte, at time.Time) error
}

// Session is one topic on one implementation, with its own publisher and
// subscriber (separate connections where the system has them).
type Session interface {
	// Publish sends one message and returns once the backend accepted it
	// (server acknowledgement for Redis and NATS). Safe for concurrent use.
	Publish(ctx context.Context, payload []byte) error
	// Consume starts consuming the topic as a member of [Group]; handle runs
	// once per message before it is acknowledged. At most one call.
	Consume(handle func(payload []byte)) error
	// Settled returns once the server holds nothing unacknowledged for the
	// group on the topic (immediately for the in-memory backends, which settle
	// in the handler's goroutine).
	Settled(ctx context.Context) error
	// Close stops consuming, closes what the session opened and deletes the
	// topic's data on the server.
	Close() error
}

// BatchPublisher is a session that sends many messages in one call.
type BatchPublisher interface {
	PublishBatch(ctx context.Context, payloads [][]byte) error
}

// WatermillSession is a session with a Watermill subscriber, for the Router
// case. Subscriber is unused unless Consume was not called.
type WatermillSession interface {
	Subscriber() message.Subscriber
	Topic() string
}

// wmSession is the session of every Watermill face: relay's and the peers'.
type wmSession struct {
	topic   string
	pub     message.Publisher
	sub     message.Subscriber
	settled func(ctx context.Context) error // nil: nothing to wait for
	cleanup []func() error                  // run by Close in order, after pub and sub are closed

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newWMSession(topic string, pub message.Publisher, sub message.Subscriber) *wmSession {
	ctx, cancel := context.WithCancel(context.Background())
	return &wmSession{topic: topic, pub: pub, sub: sub, ctx: ctx, cancel: cancel}
}

// Topic implements [WatermillSession].
func (s *wmSession) Topic() string { return s.topic }

// Subscriber implements [WatermillSession].
func (s *wmSession) Subscriber() message.Subscriber { return s.sub }

// Publish implements [Session].
func (s *wmSession) Publish(_ context.Context, payload []byte) error {
	return s.pub.Publish(s.topic, message.NewMessage(watermill.NewUUID(), payload))
}

// PublishBatch implements [BatchPublisher].
func (s *wmSession) PublishBatch(_ context.Context, payloads [][]byte) error {
	msgs := make([]*message.Message, len(payloads))
	for i, p := range payloads {
		msgs[i] = message.NewMessage(watermill.NewUUID(), p)
	}
	return s.pub.Publish(s.topic, msgs...)
}

// Consume implements [Session].
func (s *wmSession) Consume(handle func([]byte)) error {
	ch, err := s.sub.Subscribe(s.ctx, s.topic)
	if err != nil {
		return err
	}
	s.wg.Go(func() {
		for msg := range ch {
			handle(msg.Payload)
			msg.Ack()
		}
	})
	return nil
}

// Settled implements [Session].
func (s *wmSession) Settled(ctx context.Context) error {
	if s.settled == nil {
		return nil
	}
	return s.settled(ctx)
}

// Close implements [Session].
func (s *wmSession) Close() error {
	s.cancel()
	errs := []error{s.sub.Close()}
	s.wg.Wait()
	errs = append(errs, s.pub.Close())
	for _, f := range s.cleanup {
		errs = append(errs, f())
	}
	return errors.Join(errs...)
}

// poll calls done every few milliseconds until it reports true, fails, or ctx
// is done.
func poll(ctx context.Context, what string, done func(context.Context) (bool, error)) error {
	for {
		ok, err := done(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}
