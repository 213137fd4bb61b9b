package pubsubtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBroker runs the byte-face conformance suite against the brokers that
// h.NewBroker makes. Each sub-test is named by the behaviour it checks, runs
// in a fixed order, uses its own topics and groups, and closes what it made
// with t.Cleanup. A sub-test whose capability h does not declare is skipped
// with the reason.
//
// The harness must keep the backend's default dead-letter topic, the topic
// plus ".dead". The sub-test that looks for leaked goroutines assumes that no
// other test runs at the same time: do not call t.Parallel in the test that
// calls TestBroker. The sub-test of an error whose Error method panics runs
// the test binary again (os.Args[0], -test.run selecting that sub-test alone)
// in a child process, so that a crash fails the sub-test instead of ending
// the test binary; the harness is then built again in the child.
func TestBroker(t *testing.T, h Harness) {
	if h.NewBroker == nil {
		t.Fatal("pubsubtest: Harness.NewBroker is nil")
	}
	s := &byteSuite{h: h}
	for _, c := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"payloads round-trip byte for byte", s.testRoundTrip},
		{"every message is received exactly once per group when handlers succeed", s.testExactlyOncePerGroup},
		{"subscriptions of one group compete for messages", s.testCompetingConsumers},
		{"every group receives every message", s.testFanOut},
		{"a subscription receives only its own topic", s.testTopicIsolation},
		{"messages published before a group subscribes are delivered to it", s.testPublishBeforeSubscribe},
		{"a failed delivery is redelivered after a backoff", s.testRedelivery},
		{"a message that fails MaxDeliver times goes to the dead-letter topic", s.testDeadLetter},
		{"a permanent error sends the message to the dead-letter topic after one delivery", s.testPermanent},
		{"messages are handled in publish order with concurrency 1", s.testOrder},
		{"Close is idempotent and safe to call concurrently", s.testCloseConcurrent},
		{"Close waits for running handlers to return", s.testCloseWaits},
		{"Publish and Subscribe return ErrClosed after Close", s.testErrClosed},
		{"a message not finished at Close is redelivered to another broker of the group", s.testNothingLostOnClose},
		{"Close leaves no goroutine behind", s.testNoGoroutineLeft},
		{"an invalid topic is rejected by Publish and Subscribe", s.testInvalidTopic},
		{"a nil handler is rejected", s.testNilHandler},
		{"Publish returns promptly with the context's error", s.testPublishContext},
		{"a nil context is rejected with ErrNilContext by every call that takes one", s.testNilContext},
		{"a payload over the limit is rejected before anything is sent", s.testPayloadTooLarge},
		{"failed deliveries and dead letters are logged with the shared keys", s.testLogSchema},
		{"a settle that fails is logged with the shared keys and the message stays pending", s.testLogSettleFailed},
		{"Shutdown with a deadline returns while a handler is blocked", s.testShutdownDeadline},
		{"Shutdown with a deadline called from inside a handler returns", s.testShutdownFromHandler},
		{"Publish and Subscribe racing Close lose nothing", s.testRaceClose},
		{"a message handed back by Close is handled before it can be dead-lettered", s.testHandedBack},
		{"a handler that calls runtime.Goexit is settled and the subscription keeps consuming", s.testGoexit},
		{"a handler error whose Error method panics is dead-lettered without a crash", s.testErrorMethodPanics},
		{"a handler that changes its payload leaves the dead letter intact", s.testPayloadMutation},
		{"a topic whose default dead-letter topic would be invalid is refused", s.testLongTopicDefaultDeadLetter},
		{"a long topic with a short dead-letter topic is dead-lettered there", s.testLongTopicShortDeadLetter},
		{"an invalid dead-letter topic is refused by Subscribe", s.testInvalidDeadLetterTopic},
		{"messages published before a restart are delivered after it", s.testPersistAcrossRestart},
		{"a running subscription keeps consuming after a restart", s.testReconnect},
	} {
		t.Run(c.name, c.run)
	}
	for _, c := range s.delayedRows() {
		t.Run(c.name, c.run)
	}
}

type byteSuite struct{ h Harness }

// broker returns a new broker configured by cfg, closed at the end of t.
func (s *byteSuite) broker(t *testing.T, cfg Config) relay.Broker {
	t.Helper()
	b, err := s.h.NewBroker(t, cfg)
	require.NoError(t, err, "NewBroker(%+v)", cfg)
	require.NotNil(t, b, "NewBroker(%+v) returned a nil broker and no error", cfg)
	t.Cleanup(func() {
		// Close after Close must return nil too: the suite often closed it
		// already. Bounded: a Close that waits for ever for a handler fails
		// the test instead of hanging it.
		assert.NoError(t, testkit.CloseWithin(t, waitLong, b.Close, "broker Close at cleanup"), "Close at cleanup")
	})
	return b
}

func subscribe(t *testing.T, b relay.Broker, topic string, h relay.Handler) {
	t.Helper()
	require.NoError(t, b.Subscribe(topic, h), "Subscribe(%q)", topic)
}

func publish(t *testing.T, b relay.Broker, topic string, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitShort)
	defer cancel()
	require.NoError(t, b.Publish(ctx, topic, payload), "Publish(%q, %d bytes)", topic, len(payload))
}

// errInduced is what the suite's failing handlers return.
var errInduced = errors.New("pubsubtest: induced handler failure")

// settleWindow is how long the suite watches for a delivery that should not
// happen (a duplicate, a retry after success): a few maximum backoffs.
func settleWindow(cfg Config) time.Duration { return 3*cfg.MaxBackoff + 100*time.Millisecond }
