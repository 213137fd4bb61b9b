package pubsubtest

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit"
)

// WatermillSuiteLeaks returns the goleak options for the TestMain of a
// backend package that runs [TestWatermill] and checks for leaked goroutines:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(m, pubsubtest.WatermillSuiteLeaks()...) }
//
// They ignore two goroutines of Watermill's own universal suite
// (tests.TestPubSub, Watermill v1.5.1), not of the backend: the suite's
// multiplied subscriber forwards each subscriber's messages into one
// unbuffered channel that nobody reads once the test has the messages it
// waits for, so a message delivered after that (a redelivery, which
// at-least-once delivery allows, as after an ack wait on a loaded machine)
// leaves its forwarding goroutine blocked for ever, and with it the goroutine
// that waits for the forwarders to end. Every other goroutine is still
// checked.
func WatermillSuiteLeaks() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/ThreeDotsLabs/watermill/internal/subscriber.(*multiplier).Subscribe.func2"),
		goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill/internal/subscriber.(*multiplier).Subscribe.func3"),
	}
}

// DeriveFeatures returns the flags of Watermill's universal suite
// (tests.Features) that a relay backend declaring c is held to. Every flag is
// derived from what the flag's tests check, so that the strongest honest set
// runs:
//
//   - ConsumerGroups: true. Every relay backend has groups (TestConsumerGroups).
//   - Persistent: true. Watermill's flag means "messages survive between
//     instances of a Pub/Sub": TestContinueAfterSubscribeClose and
//     TestContinueAfterErrors close subscribers and expect a new one of the same
//     group to continue where they left off. That is relay's contract for every
//     backend (nothing lost on Close, publish before subscribe persists, one
//     topic space per harness), not only for those whose
//     [Capabilities].Persistent also survives a server restart.
//   - GuaranteedOrder and GuaranteedOrderWithSingleSubscriber: c.Ordered.
//     TestPublishSubscribeInOrder then uses one subscriber, and TestNoAck
//     expects no second message before the first is acked; [TestWatermill]
//     runs the suite with Concurrency 1 in that case, the setting under which
//     relay promises order.
//   - ExactlyOnceDelivery: false. Delivery is at least once.
//   - NewSubscriberReceivesOldMessages: false. Watermill's constructor gives
//     every subscriber the same group, and in a group a consumed message is
//     gone (Kafka-like replay is not part of relay's contract).
//   - RequireSingleInstance: false. Instances share the harness's topic space.
//   - RestartServiceCommand: empty, so TestReconnect skips: Watermill restarts
//     a server with an external command, which an in-process server has not.
//     [TestBroker] tests reconnection with [Harness].Restart instead.
//   - GenerateTopicFunc: topics "relay_wm_<uuid>", valid by
//     [relay.ValidateTopic].
//
// [Harness].WatermillFeatures may change the result for one backend.
func DeriveFeatures(c Capabilities) tests.Features {
	return tests.Features{
		ConsumerGroups:                      true,
		ExactlyOnceDelivery:                 false,
		GuaranteedOrder:                     c.Ordered,
		GuaranteedOrderWithSingleSubscriber: c.Ordered,
		Persistent:                          true,
		RequireSingleInstance:               false,
		NewSubscriberReceivesOldMessages:    false,
		GenerateTopicFunc: func(tctx tests.TestContext) string {
			return "relay_wm_" + string(tctx.TestID)
		},
	}
}

// TestWatermill runs the Watermill-face conformance suite against the
// publishers and subscribers that h.NewPublisher and h.NewSubscriber make:
// first Watermill's own universal suite (tests.TestPubSub) with the features
// of [DeriveFeatures] (changed by h.WatermillFeatures when set), then relay's
// own rows: UUID and metadata round trip, redelivery after Nack, dead letters
// with their metadata, ErrClosed, Publish and Subscribe racing Close,
// messages handed back by Close, router handlers that call runtime.Goexit or
// return an error whose Error method panics, the shape of the errors of
// Publish and Subscribe, delayed delivery (when Capabilities.Delayed is
// set), and, when h.NewBroker is set
// too, messages crossing between the byte face and the Watermill face; then
// SubscribeInitialize, when the subscriber implements
// message.SubscribeInitializer, and routers with Watermill's Retry,
// PoisonQueue and Throttle middleware over relay's retries, counting handler
// calls, dead letters and poison-queue messages.
//
// The sub-test of an error whose Error method panics runs in a child
// process, as [TestBroker]'s does. Watermill's suite runs its sub-tests in
// parallel and takes some seconds;
// -short shrinks it. It runs on [DefaultConfig] except that MaxDeliver is
// 10,000, since Watermill expects a nacked message back however often it is
// nacked, and Concurrency is 1 when the features promise order.
func TestWatermill(t *testing.T, h Harness) {
	if h.NewPublisher == nil || h.NewSubscriber == nil {
		t.Fatal("pubsubtest: Harness.NewPublisher and NewSubscriber are required by TestWatermill")
	}
	s := &wmSuite{h: h, bytes: &byteSuite{h: h}}
	for _, c := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"Watermill's universal suite passes", s.testUniversal},
		{"a message keeps its UUID, metadata and payload", s.testRoundTrip},
		{"a message with metadata Status and an empty payload is delivered and acked", s.testStatusLookalike},
		{"a nacked message is redelivered after a backoff", s.testNack},
		{"a message nacked MaxDeliver times goes to the dead-letter topic with relay's metadata", s.testDeadLetter},
		{"a router handler's error becomes the dead letter's reason, and a permanent one is not retried", s.testRouterNackReason},
		{"Publish and Subscribe return ErrClosed after Close", s.testErrClosed},
		{"a nil context is rejected with ErrNilContext by Subscribe and Shutdown", s.testNilContext},
		{"Shutdown with a deadline returns while a message is out unacked", s.testShutdownDeadline},
		{"a message out unacked at Close is redelivered, not dead-lettered", s.testUnackedAtClose},
		{"Publisher.Publish and Subscriber.Subscribe racing Close lose nothing", s.testRaceClose},
		{"messages handed back by Subscriber.Close are redelivered to the group, not dead-lettered", s.testHandedBack},
		{"the first of Ack and Nack wins", s.testFirstSettleWins},
		{"a router handler that calls runtime.Goexit is nacked and the subscription keeps consuming", s.testGoexit},
		{"a router handler's error whose Error method panics is dead-lettered without a crash", s.testErrorMethodPanics},
		{"a handler that changes msg.Payload leaves redeliveries and the dead letter intact", s.testPayloadMutation},
		{"a publisher that reuses its payloads after a batch Publish returns changes no stored message", s.testPublisherReuse},
		{"an invalid topic is rejected by Publish and Subscribe", s.testInvalidTopic},
		{"errors of Publish and Subscribe name the backend, the operation and the topic", s.testErrorShape},
		{"Publish returns promptly with the message context's error", s.testPublishContext},
		{"a topic whose default dead-letter topic would be invalid is refused", s.testLongTopicDefaultDeadLetter},
		{"an invalid dead-letter topic is refused by Subscribe", s.testInvalidDeadLetterTopic},
		{"a message published on the byte face is received on the Watermill face", s.testByteToWatermill},
		{"a message published on the Watermill face is received on the byte face", s.testWatermillToByte},
		{"a dead letter of the byte face carries relay's metadata on the Watermill face", s.testByteDeadLetter},
		{"SubscribeInitialize prepares the group's topic without consuming", s.testSubscribeInitialize},
		{"Watermill's Retry, PoisonQueue and Throttle compose with relay's retries as the README says", s.testMiddleware},
	} {
		t.Run(c.name, c.run)
	}
	for _, c := range s.delayedRows() {
		t.Run(c.name, c.run)
	}
}

type wmSuite struct {
	h     Harness
	bytes *byteSuite
}

func (s *wmSuite) publisher(t *testing.T, cfg Config) message.Publisher {
	t.Helper()
	p, err := s.h.NewPublisher(t, cfg)
	require.NoError(t, err, "NewPublisher(%+v)", cfg)
	require.NotNil(t, p, "NewPublisher(%+v) returned a nil publisher and no error", cfg)
	t.Cleanup(func() {
		assert.NoError(t, testkit.CloseWithin(t, waitLong, p.Close, "publisher Close at cleanup"), "publisher Close at cleanup")
	})
	return p
}

func (s *wmSuite) subscriber(t *testing.T, cfg Config) message.Subscriber {
	t.Helper()
	sub, err := s.h.NewSubscriber(t, cfg)
	require.NoError(t, err, "NewSubscriber(%+v)", cfg)
	require.NotNil(t, sub, "NewSubscriber(%+v) returned a nil subscriber and no error", cfg)
	t.Cleanup(func() {
		assert.NoError(t, testkit.CloseWithin(t, waitLong, sub.Close, "subscriber Close at cleanup"), "subscriber Close at cleanup")
	})
	return sub
}

// subscribeWM subscribes sub to topic for the rest of t.
func subscribeWM(t *testing.T, sub message.Subscriber, topic string) <-chan *message.Message {
	t.Helper()
	ch, err := sub.Subscribe(t.Context(), topic)
	require.NoError(t, err, "Subscribe(%q)", topic)
	return ch
}

func publishWM(t *testing.T, pub message.Publisher, topic string, msgs ...*message.Message) {
	t.Helper()
	require.NoError(t, pub.Publish(topic, msgs...), "Publish(%q)", topic)
}

// receiveWM returns the next message of ch, failing t after timeout.
func receiveWM(t *testing.T, ch <-chan *message.Message, timeout time.Duration, what string) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed before a message arrived", what)
		}
		return m
	case <-time.After(timeout):
		t.Fatalf("%s: no message within %v", what, timeout)
		return nil
	}
}

// universalMaxDeliver is the MaxDeliver of the brokers Watermill's universal
// suite runs on: more deliveries than any of its tests makes.
const universalMaxDeliver = 10_000

func (s *wmSuite) testUniversal(t *testing.T) {
	features := DeriveFeatures(s.h.Capabilities)
	if s.h.WatermillFeatures != nil {
		features = s.h.WatermillFeatures(features)
	}
	base := DefaultConfig()
	// Watermill's suite knows no dead letters: it expects a message to come
	// back however often it is nacked (TestContinueAfterErrors nacks 300 times
	// over 50 messages), so relay's MaxDeliver must not cut in.
	base.MaxDeliver = universalMaxDeliver
	if features.GuaranteedOrder || features.GuaranteedOrderWithSingleSubscriber {
		base.Concurrency = 1 // relay keeps order only with one handler at a time
	}
	group := NewGroup() // one group for the plain constructor, as Watermill expects
	withGroup := func(t *testing.T, g string) (message.Publisher, message.Subscriber) {
		cfg := base
		cfg.Group = g
		return s.publisher(t, cfg), s.subscriber(t, cfg)
	}
	tests.TestPubSub(t, features,
		func(t *testing.T) (message.Publisher, message.Subscriber) { return withGroup(t, group) },
		withGroup,
	)
}

func (s *wmSuite) testRoundTrip(t *testing.T) {
	topic := NewTopic(t)
	ch := subscribeWM(t, s.subscriber(t, DefaultConfig()), topic)
	payload := []byte("\x00\x01\xff binary \xc3\x28")
	sent := message.NewMessage(watermill.NewUUID(), payload)
	md := map[string]string{"trace_id": "abc-123", "content_type": "application/octet-stream", "note": "caf\u00e9 = ok"}
	for k, v := range md {
		sent.Metadata.Set(k, v)
	}
	publishWM(t, s.publisher(t, DefaultConfig()), topic, sent)
	got := receiveWM(t, ch, waitShort, "subscriber")
	got.Ack()
	if got.UUID != sent.UUID {
		t.Errorf("UUID = %q, want %q", got.UUID, sent.UUID)
	}
	if err := checkMetadataKept(got.Metadata, md); err != nil {
		t.Error(err)
	}
	if err := checkPayload(got.Payload, payload); err != nil {
		t.Error(err)
	}
}

// testStatusLookalike guards issue 16 item 1: a stored message with an empty
// payload and a Status header looks like a NATS pull status; it must be
// delivered like any other, and not stall the messages published after it.
func (s *wmSuite) testStatusLookalike(t *testing.T) {
	topic := NewTopic(t)
	ch := subscribeWM(t, s.subscriber(t, DefaultConfig()), topic)
	odd := message.NewMessage(watermill.NewUUID(), nil)
	odd.Metadata.Set("Status", "404")
	next := message.NewMessage(watermill.NewUUID(), []byte("after"))
	publishWM(t, s.publisher(t, DefaultConfig()), topic, odd, next)
	seen := map[string]bool{}
	for len(seen) < 2 {
		got := receiveWM(t, ch, waitShort, "subscriber")
		got.Ack()
		seen[got.UUID] = true
		if got.UUID == odd.UUID {
			if v := got.Metadata.Get("Status"); v != "404" {
				t.Errorf("metadata Status = %q, want 404", v)
			}
			if len(got.Payload) != 0 {
				t.Errorf("payload = %q, want empty", got.Payload)
			}
		}
	}
	if !seen[odd.UUID] || !seen[next.UUID] {
		t.Errorf("delivered %v, want both %s and %s", seen, odd.UUID, next.UUID)
	}
}

func (s *wmSuite) testNack(t *testing.T) {
	cfg := DefaultConfig()
	topic := NewTopic(t)
	ch := subscribeWM(t, s.subscriber(t, cfg), topic)
	sent := message.NewMessage(watermill.NewUUID(), []byte("n"))
	publishWM(t, s.publisher(t, DefaultConfig()), topic, sent)
	first := receiveWM(t, ch, waitShort, "first delivery")
	t1 := time.Now()
	first.Nack()
	second := receiveWM(t, ch, waitShort, "redelivery after Nack")
	t2 := time.Now()
	second.Ack()
	if first.UUID != sent.UUID || second.UUID != sent.UUID {
		t.Errorf("UUIDs %q then %q, want %q twice", first.UUID, second.UUID, sent.UUID)
	}
	if err := checkBackoff([]time.Time{t1, t2}, backoffFloor(cfg)); err != nil {
		t.Error(err)
	}
	select {
	case m, ok := <-ch:
		if ok {
			m.Ack()
			t.Errorf("message %q delivered again after Ack", m.UUID)
		}
	case <-time.After(settleWindow(cfg)):
	}
}

func (s *wmSuite) testDeadLetter(t *testing.T) {
	cfg := DefaultConfig()
	topic := NewTopic(t)
	src := subscribeWM(t, s.subscriber(t, cfg), topic)
	var deliveries atomic.Int32
	go func() {
		for m := range src { // ends when the subscriber closes at cleanup
			deliveries.Add(1)
			m.Nack()
		}
	}()
	dead := subscribeWM(t, s.subscriber(t, DefaultConfig()), topic+".dead")
	payload := []byte("dead \x00\xff letter")
	sent := message.NewMessage(watermill.NewUUID(), payload)
	orig := map[string]string{"trace_id": "t-1"}
	sent.Metadata.Set("trace_id", "t-1")
	publishWM(t, s.publisher(t, DefaultConfig()), topic, sent)
	got := receiveWM(t, dead, waitShort, "dead-letter topic "+topic+".dead")
	got.Ack()
	quiet(settleWindow(cfg))
	if err := checkDeliveries(int(deliveries.Load()), cfg.MaxDeliver); err != nil {
		t.Errorf("source topic: %v", err)
	}
	if got.UUID != sent.UUID {
		t.Errorf("dead letter UUID = %q, want the source's %q", got.UUID, sent.UUID)
	}
	if err := checkPayload(got.Payload, payload); err != nil {
		t.Errorf("dead letter: %v", err)
	}
	if err := checkDeadLetterMetadata(got.Metadata, orig, topic, cfg.MaxDeliver); err != nil {
		t.Errorf("dead letter: %v", err)
	}
}

// testRouterNackReason runs a Watermill router with relay.NackReason: the
// handler's error text must reach the dead letter, and an error wrapping
// relay.ErrPermanent must dead-letter after one delivery.
func (s *wmSuite) testRouterNackReason(t *testing.T) {
	cfg := DefaultConfig()
	topic := NewTopic(t)
	var deliveries atomic.Int32
	runRouter(t, s.subscriber(t, cfg), topic, func(msg *message.Message) error {
		deliveries.Add(1)
		return fmt.Errorf("order %s: %w", msg.Payload, relay.ErrPermanent)
	})
	dead := subscribeWM(t, s.subscriber(t, DefaultConfig()), topic+".dead")
	publishWM(t, s.publisher(t, DefaultConfig()), topic, message.NewMessage(watermill.NewUUID(), []byte("42")))
	got := receiveWM(t, dead, waitShort, "dead-letter topic "+topic+".dead")
	got.Ack()
	quiet(settleWindow(cfg))
	if err := checkDeliveries(int(deliveries.Load()), 1); err != nil {
		t.Errorf("source topic: %v (a permanent error must not be retried)", err)
	}
	if want := "order 42: " + relay.ErrPermanent.Error(); got.Metadata.Get(relay.MetadataReason) != want {
		t.Errorf("dead letter reason = %q, want the handler's error %q", got.Metadata.Get(relay.MetadataReason), want)
	}
}

func (s *wmSuite) needBroker(t *testing.T) {
	t.Helper()
	if s.h.NewBroker == nil {
		t.Skip("Harness.NewBroker is nil: cannot cross between the byte face and the Watermill face")
	}
}

func (s *wmSuite) testByteToWatermill(t *testing.T) {
	s.needBroker(t)
	topic := NewTopic(t)
	ch := subscribeWM(t, s.subscriber(t, DefaultConfig()), topic)
	payload := []byte("byte face \x00\xff")
	publish(t, s.bytes.broker(t, DefaultConfig()), topic, payload)
	got := receiveWM(t, ch, waitShort, "Watermill subscriber")
	got.Ack()
	if err := checkPayload(got.Payload, payload); err != nil {
		t.Error(err)
	}
	if got.UUID == "" {
		t.Error("a message published on the byte face arrived without a UUID")
	}
}

func (s *wmSuite) testWatermillToByte(t *testing.T) {
	s.needBroker(t)
	topic := NewTopic(t)
	in := newInbox()
	subscribe(t, s.bytes.broker(t, DefaultConfig()), topic, in.handler(nil))
	payload := []byte("watermill face \x00\xff")
	sent := message.NewMessage(watermill.NewUUID(), payload)
	sent.Metadata.Set("trace_id", "x")
	publishWM(t, s.publisher(t, DefaultConfig()), topic, sent)
	in.waitDistinct(t, 1, waitShort, "byte subscriber")
	quiet(settleWindow(DefaultConfig()))
	if err := checkExactlyOnce(in.counts(), []string{string(payload)}); err != nil {
		t.Error(err)
	}
}

func (s *wmSuite) testByteDeadLetter(t *testing.T) {
	s.needBroker(t)
	cfg := DefaultConfig()
	topic := NewTopic(t)
	in := newInbox()
	b := s.bytes.broker(t, cfg)
	subscribe(t, b, topic, in.handler(func([]byte) error { return errInduced }))
	dead := subscribeWM(t, s.subscriber(t, DefaultConfig()), topic+".dead")
	payload := []byte("byte dead \x00\xff letter")
	publish(t, b, topic, payload)
	got := receiveWM(t, dead, waitShort, "dead-letter topic "+topic+".dead")
	got.Ack()
	if err := checkPayload(got.Payload, payload); err != nil {
		t.Errorf("dead letter: %v", err)
	}
	if err := checkDeadLetterMetadata(got.Metadata, nil, topic, cfg.MaxDeliver); err != nil {
		t.Errorf("dead letter: %v", err)
	}
	if reason := got.Metadata.Get(relay.MetadataReason); !strings.Contains(reason, errInduced.Error()) {
		t.Errorf("dead letter reason %q does not contain the handler's error %q", reason, errInduced)
	}
}
