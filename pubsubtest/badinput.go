package pubsubtest

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"

	"github.com/go-relay/relay"
)

// invalidTopics are topics that [relay.ValidateTopic] refuses, one per rule,
// by name.
var invalidTopics = []struct{ name, topic string }{
	{"empty", ""},
	{"only white space", " "},
	{"inner space", "a b"},
	{"tab", "a\tb"},
	{"no-break space", "a\u00a0b"},
	{"NUL byte", "a\x00b"},
	{"wildcard * alone", "*"},
	{"wildcard > alone", ">"},
	{"wildcard *", "a.*"},
	{"wildcard >", "a.>"},
	{"empty token", "a..b"},
	{"leading dot", ".a"},
	{"trailing dot", "a."},
	{"256 bytes", strings.Repeat("a", relay.MaxTopicLength+1)},
	{"reserved $ prefix", "$JS.API"},
	{"invalid UTF-8", "a\xffb"},
	{"a lone invalid byte", "\xff"},
}

// testInvalidTopic: the Watermill face refuses the topics the byte face
// refuses, with ErrInvalidTopic, on Publish and Subscribe.
func (s *wmSuite) testInvalidTopic(t *testing.T) {
	pub := s.publisher(t, DefaultConfig())
	sub := s.subscriber(t, DefaultConfig())
	for _, c := range invalidTopics {
		t.Run(c.name, func(t *testing.T) {
			err := pub.Publish(c.topic, message.NewMessage(watermill.NewUUID(), []byte("x")))
			assert.NoError(t, checkErrorIs(fmt.Sprintf("Publish(%q)", c.topic), err, relay.ErrInvalidTopic))
			_, err = sub.Subscribe(t.Context(), c.topic)
			assert.NoError(t, checkErrorIs(fmt.Sprintf("Subscribe(%q)", c.topic), err, relay.ErrInvalidTopic))
		})
	}
}

// testErrorShape: the Watermill face's errors have the byte face's shape,
// "<backend>: <op> "<topic>": <cause>", for an invalid topic on Publish and
// Subscribe and for a closed publisher and subscriber, so that one log
// query or alert matches every backend and both faces.
func (s *wmSuite) testErrorShape(t *testing.T) {
	pub := s.publisher(t, DefaultConfig())
	sub := s.subscriber(t, DefaultConfig())
	for _, c := range invalidTopics {
		err := pub.Publish(c.topic, message.NewMessage(watermill.NewUUID(), []byte("x")))
		assert.NoError(t, checkErrorShape(err, "publish", c.topic), "Publish(%q) (%s)", c.topic, c.name)
		_, err = sub.Subscribe(t.Context(), c.topic)
		assert.NoError(t, checkErrorShape(err, "subscribe", c.topic), "Subscribe(%q) (%s)", c.topic, c.name)
	}
	topic := NewTopic(t)
	assert.NoError(t, pub.Close(), "publisher Close")
	assert.NoError(t, sub.Close(), "subscriber Close")
	err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), []byte("x")))
	if assert.Error(t, err, "Publish after Close") {
		assert.NoError(t, checkErrorShape(err, "publish", topic), "Publish after Close")
	}
	_, err = sub.Subscribe(t.Context(), topic)
	if assert.Error(t, err, "Subscribe after Close") {
		assert.NoError(t, checkErrorShape(err, "subscribe", topic), "Subscribe after Close")
	}
}

// testPublishContext: a message whose context (msg.Context()) is already
// canceled is refused promptly with an error wrapping context.Canceled, as
// the byte face refuses its ctx, and nothing is stored.
func (s *wmSuite) testPublishContext(t *testing.T) {
	topic := NewTopic(t)
	ch := subscribeWM(t, s.subscriber(t, DefaultConfig()), topic)
	pub := s.publisher(t, DefaultConfig())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := message.NewMessage(watermill.NewUUID(), []byte("canceled"))
	m.SetContext(ctx)
	done := make(chan error, 1)
	go func() { done <- pub.Publish(topic, m) }()
	select {
	case err := <-done:
		assert.NoError(t, checkErrorIs("Publish with a canceled message context", err, context.Canceled))
	case <-time.After(waitShort):
		t.Fatalf("Publish with a canceled message context did not return within %v", waitShort)
	}
	publishWM(t, pub, topic, message.NewMessage(watermill.NewUUID(), []byte("after")))
	got := receiveWM(t, ch, waitShort, "subscriber")
	got.Ack()
	if string(got.Payload) != "after" {
		t.Errorf("first delivery %q, want %q: the refused Publish stored its message", got.Payload, "after")
	}
}

// maxLengthTopic returns a topic of relay.MaxTopicLength bytes, unique to t:
// valid, but its default dead-letter topic (plus ".dead") is not.
func maxLengthTopic(t *testing.T) string {
	t.Helper()
	topic := NewTopic(t) + "_"
	topic += strings.Repeat("t", relay.MaxTopicLength-len(topic))
	if err := relay.ValidateTopic(topic); err != nil {
		t.Fatalf("pubsubtest: long topic: %v", err)
	}
	return topic
}

// needDeadLetterTopic skips t unless the harness passes
// [Config].DeadLetterTopic on to the backend: it sends a permanently failing
// message through a broker whose DeadLetterTopic names a topic of its own
// and sees where the dead letter lands.
func (s *byteSuite) needDeadLetterTopic(t *testing.T) {
	t.Helper()
	topic, dlTopic := NewTopic(t), NewTopic(t)
	cfg := DefaultConfig()
	cfg.DeadLetterTopic = func(string) string { return dlTopic }
	b := s.broker(t, cfg)
	where := make(chan string, 2)
	subscribe(t, b, topic, func([]byte) error { return relay.Permanent(errInduced) })
	watch := s.broker(t, DefaultConfig())
	for _, dl := range []string{dlTopic, topic + ".dead"} {
		subscribe(t, watch, dl, func([]byte) error { where <- dl; return nil })
	}
	publish(t, b, topic, []byte("probe"))
	select {
	case dl := <-where:
		if dl != dlTopic {
			t.Skip("the harness does not pass Config.DeadLetterTopic to the backend")
		}
	case <-time.After(waitShort):
		t.Fatalf("probe of Config.DeadLetterTopic: no dead letter within %v", waitShort)
	}
}

// testLongTopicDefaultDeadLetter: a valid topic of relay.MaxTopicLength bytes
// whose default dead-letter topic would be too long is refused by Subscribe
// with ErrInvalidTopic, rather than accepted with nowhere to send its dead
// letters (redelivered for ever, or written where nothing can read them).
func (s *byteSuite) testLongTopicDefaultDeadLetter(t *testing.T) {
	topic := maxLengthTopic(t)
	err := s.broker(t, DefaultConfig()).Subscribe(topic, func([]byte) error { return nil })
	if err := checkErrorIs(fmt.Sprintf("Subscribe(%d-byte topic, %d-byte dead-letter topic)", len(topic), len(topic)+len(".dead")),
		err, relay.ErrInvalidTopic); err != nil {
		t.Error(err)
	}
}

// testLongTopicDefaultDeadLetter: the same on the Watermill face.
func (s *wmSuite) testLongTopicDefaultDeadLetter(t *testing.T) {
	topic := maxLengthTopic(t)
	_, err := s.subscriber(t, DefaultConfig()).Subscribe(t.Context(), topic)
	assert.NoError(t, checkErrorIs(fmt.Sprintf("Subscribe(%d-byte topic)", len(topic)), err, relay.ErrInvalidTopic))
}

// testLongTopicShortDeadLetter: with Config.DeadLetterTopic naming a short
// valid topic, the long topic is accepted, and a permanently failing message
// is handled once and dead-lettered there with the long topic as its source.
func (s *byteSuite) testLongTopicShortDeadLetter(t *testing.T) {
	s.needDeadLetterTopic(t)
	topic, dlTopic := maxLengthTopic(t), NewTopic(t)
	dead := s.watchDead(t, dlTopic)
	cfg := DefaultConfig()
	cfg.MaxDeliver = 2
	cfg.DeadLetterTopic = func(string) string { return dlTopic }
	var calls atomic.Int32
	b := s.broker(t, cfg)
	subscribe(t, b, topic, func([]byte) error {
		calls.Add(1)
		return relay.Permanent(errInduced)
	})
	publish(t, b, topic, []byte("p"))
	m := dead.next(t, fmt.Sprintf("dead-letter topic %q of a %d-byte topic", dlTopic, len(topic)))
	assert.NoError(t, checkPayload(m.payload, []byte("p")), "dead letter")
	if src, ok := m.metadata[relay.MetadataSourceTopic]; m.metadata != nil && (!ok || src != topic) {
		t.Errorf("dead letter source topic of %d bytes, want the %d-byte topic", len(src), len(topic))
	}
	quiet(settleWindow(cfg))
	assert.NoError(t, checkDeliveries(int(calls.Load()), 1), "source topic")
}

// invalidDeadLetterTopic is what the rows of an invalid dead-letter topic
// have Config.DeadLetterTopic return.
const invalidDeadLetterTopic = "not valid *"

// testInvalidDeadLetterTopic: when Config.DeadLetterTopic returns an invalid
// topic, Subscribe refuses every topic with ErrInvalidTopic: a subscription
// whose failed messages cannot be dead-lettered is not accepted.
func (s *byteSuite) testInvalidDeadLetterTopic(t *testing.T) {
	s.needDeadLetterTopic(t)
	cfg := DefaultConfig()
	cfg.DeadLetterTopic = func(string) string { return invalidDeadLetterTopic }
	err := s.broker(t, cfg).Subscribe(NewTopic(t), func([]byte) error { return nil })
	assert.NoError(t, checkErrorIs(fmt.Sprintf("Subscribe with dead-letter topic %q", invalidDeadLetterTopic), err, relay.ErrInvalidTopic))
}

// testInvalidDeadLetterTopic: the same on the Watermill face.
func (s *wmSuite) testInvalidDeadLetterTopic(t *testing.T) {
	if s.h.NewBroker == nil {
		t.Skip("Harness.NewBroker is nil: cannot probe whether the harness passes Config.DeadLetterTopic on")
	}
	s.bytes.needDeadLetterTopic(t)
	cfg := DefaultConfig()
	cfg.DeadLetterTopic = func(string) string { return invalidDeadLetterTopic }
	_, err := s.subscriber(t, cfg).Subscribe(t.Context(), NewTopic(t))
	assert.NoError(t, checkErrorIs(fmt.Sprintf("Subscribe with dead-letter topic %q", invalidDeadLetterTopic), err, relay.ErrInvalidTopic))
}

func (s *byteSuite) testInvalidTopic(t *testing.T) {
	b := s.broker(t, DefaultConfig())
	for _, c := range invalidTopics {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitShort)
			defer cancel()
			err := b.Publish(ctx, c.topic, []byte("x"))
			assert.NoError(t, checkErrorIs(fmt.Sprintf("Publish(%q)", c.topic), err, relay.ErrInvalidTopic))
			assert.NoError(t, checkErrorShape(err, "publish", c.topic))
			err = b.Subscribe(c.topic, func([]byte) error { return nil })
			assert.NoError(t, checkErrorIs(fmt.Sprintf("Subscribe(%q)", c.topic), err, relay.ErrInvalidTopic))
			assert.NoError(t, checkErrorShape(err, "subscribe", c.topic))
		})
	}
}

func (s *byteSuite) testNilHandler(t *testing.T) {
	b := s.broker(t, DefaultConfig())
	assert.NoError(t, checkErrorIs("Subscribe with a nil handler", b.Subscribe(NewTopic(t), nil), relay.ErrNilHandler))
}

func (s *byteSuite) testPublishContext(t *testing.T) {
	b := s.broker(t, DefaultConfig())
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	cases := []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"canceled", canceled, context.Canceled},
		{"deadline exceeded", expired, context.DeadlineExceeded},
	}
	const prompt = 2 * time.Second
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			topic := NewTopic(t)
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- b.Publish(c.ctx, topic, []byte("x")) }()
			select {
			case err := <-done:
				assert.NoError(t, checkErrorIs("Publish", err, c.want))
				if d := time.Since(start); d > prompt {
					t.Errorf("Publish took %v with a done context, want under %v", d, prompt)
				}
			case <-time.After(waitShort):
				t.Fatalf("Publish with a done context did not return within %v", waitShort)
			}
		})
	}
}

// shutdowner is the Close with a context that backends may offer beside
// Close (all of relay's do).
type shutdowner interface {
	Shutdown(ctx context.Context) error
}

// callNoPanic runs f and returns its error, or an error saying that it
// panicked: a nil context must be refused, not crash the process.
func callNoPanic(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("a panic: %v", v)
		}
	}()
	return f()
}

func (s *byteSuite) testNilContext(t *testing.T) {
	b := s.broker(t, DefaultConfig())
	topic := NewTopic(t)
	var nilCtx context.Context // a variable: a nil literal is what vet-like checkers flag
	err := callNoPanic(func() error { return b.Publish(nilCtx, topic, []byte("x")) })
	assert.NoError(t, checkErrorIs("Publish with a nil context", err, relay.ErrNilContext))
	if sd, ok := b.(shutdowner); ok {
		err := callNoPanic(func() error { return sd.Shutdown(nilCtx) })
		assert.NoError(t, checkErrorIs("Shutdown with a nil context", err, relay.ErrNilContext))
	}
	// Nothing was sent, and the refused Shutdown closed nothing: the broker
	// still publishes and delivers, and the first message is the good one.
	got := make(chan []byte, 2)
	subscribe(t, b, topic, func(p []byte) error { got <- p; return nil })
	publish(t, b, topic, []byte("after"))
	select {
	case p := <-got:
		if string(p) != "after" {
			t.Errorf("first delivery %q, want %q: the refused Publish sent something", p, "after")
		}
	case <-time.After(waitShort):
		t.Fatalf("nothing delivered within %v after the nil-context calls", waitShort)
	}
}

func (s *byteSuite) testPayloadTooLarge(t *testing.T) {
	max := s.h.Capabilities.MaxPayload
	if max <= 0 {
		t.Skip("Capabilities.MaxPayload is 0: no payload limit declared")
	}
	topic := NewTopic(t)
	in := newInbox()
	subscribe(t, s.broker(t, DefaultConfig()), topic, in.handler(nil))
	pub := s.broker(t, DefaultConfig())
	ctx, cancel := context.WithTimeout(context.Background(), waitShort)
	defer cancel()
	err := pub.Publish(ctx, topic, make([]byte, max+1))
	assert.NoError(t, checkErrorIs(fmt.Sprintf("Publish of %d bytes (MaxPayload %d)", max+1, max), err, relay.ErrPayloadTooLarge))
	// Nothing of the rejected payload may reach the subscription.
	publish(t, pub, topic, []byte("after"))
	in.waitDistinct(t, 1, waitShort, "subscription")
	quiet(settleWindow(DefaultConfig()))
	if in.distinct() != 1 || in.counts()["after"] != 1 {
		t.Errorf("received %d messages (%d distinct), want only the small one published after the rejected one", in.len(), in.distinct())
	}
}

func (s *wmSuite) testNilContext(t *testing.T) {
	topic := NewTopic(t)
	sub := s.subscriber(t, DefaultConfig())
	var nilCtx context.Context // a variable: a nil literal is what vet-like checkers flag
	err := callNoPanic(func() error {
		_, err := sub.Subscribe(nilCtx, topic)
		return err
	})
	assert.NoError(t, checkErrorIs("Subscribe with a nil context", err, relay.ErrNilContext))
	if sd, ok := sub.(shutdowner); ok {
		err := callNoPanic(func() error { return sd.Shutdown(nilCtx) })
		assert.NoError(t, checkErrorIs("Shutdown with a nil context", err, relay.ErrNilContext))
	}
	// The refused Shutdown closed nothing: the subscriber still subscribes.
	if _, err := sub.Subscribe(t.Context(), topic); err != nil {
		t.Errorf("Subscribe after the nil-context calls: %v", err)
	}
}
