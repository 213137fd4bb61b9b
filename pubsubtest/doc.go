// Package pubsubtest is relay's conformance suite: the checks a message
// backend must pass to be a relay backend, importable by anyone who writes
// one, in the spirit of testing/fstest.TestFS and gocloud's drivertest.
//
// # Usage
//
// A backend author fills in a [Harness] (constructors mapping a [Config] onto
// the backend's options, and the [Capabilities] the backend declares) and
// calls the suite from a test:
//
//	func harness(t *testing.T) pubsubtest.Harness {
//		hub, err := memory.NewHub() // one topic space for the whole test
//		if err != nil {
//			t.Fatal(err)
//		}
//		opts := func(c pubsubtest.Config) []memory.Option {
//			return []memory.Option{memory.WithGroup(c.Group), memory.WithMaxDeliver(c.MaxDeliver),
//				memory.WithBackoff(c.MinBackoff, c.MaxBackoff), memory.WithConcurrency(c.Concurrency)}
//		}
//		return pubsubtest.Harness{
//			NewBroker: func(t *testing.T, c pubsubtest.Config) (relay.Broker, error) {
//				return memory.NewBroker(append(opts(c), memory.WithHub(hub))...)
//			},
//			NewPublisher:  func(t *testing.T, c pubsubtest.Config) (message.Publisher, error) { return memory.NewPublisher(hub, opts(c)...) },
//			NewSubscriber: func(t *testing.T, c pubsubtest.Config) (message.Subscriber, error) { return memory.NewSubscriber(hub, opts(c)...) },
//			Capabilities:  pubsubtest.Capabilities{Ordered: true},
//		}
//	}
//
//	func TestConformance(t *testing.T) {
//		pubsubtest.TestBroker(t, harness(t))    // the byte face: relay.Broker
//		pubsubtest.TestWatermill(t, harness(t)) // the Watermill face
//	}
//
// [TestBroker] checks the byte face ([relay.Broker]); [TestWatermill] runs
// Watermill's own universal suite (github.com/ThreeDotsLabs/watermill/pubsub/tests)
// on the Watermill face, then relay's own Watermill rows and the rows where a
// message crosses from one face to the other. Each sub-test is named by the
// behaviour it checks ("Close waits for running handlers to return"), so a
// failure reads as the broken promise; run one with
// go test -run 'TestConformance/Close_waits'.
//
// # What is checked
//
// Every line of relay's delivery contract and of its bad-input table: payloads
// round-trip byte for byte (empty, binary, invalid UTF-8, 512 KiB); every
// message reaches every group exactly once while handlers succeed, with
// subscriptions of one group competing; messages published before a group
// exists reach it; a failed or panicking delivery is redelivered after a
// backoff, at most MaxDeliver times, and then goes to the dead-letter topic
// (topic + ".dead") with its payload intact, at once for [relay.ErrPermanent];
// order is kept with Concurrency 1; Close is idempotent, concurrent-safe,
// waits for running handlers, loses nothing and leaves no goroutine; Publish
// and Subscribe return [relay.ErrClosed] after Close, [relay.ErrInvalidTopic],
// [relay.ErrNilHandler], [relay.ErrPayloadTooLarge] and the context's error
// where due, and [relay.ErrNilContext] for a nil context (Publish, Watermill
// Subscribe, and Shutdown where the value has one), every error of an
// operation on a topic shaped "<backend>: <op> "<topic>": <cause>" (invalid
// topics on both faces, a closed Watermill publisher and subscriber);
// failed deliveries, dead letters and a settle that fails (a dead letter
// that cannot be written: the message stays pending) are logged with the
// shared keys; and, with [Harness].Restart, messages and running
// subscriptions survive a server restart.
//
// And what misbehaving handlers and callers do to a backend, on both faces
// (on the Watermill face the handler is a router's, behind
// [relay.NackReason]): a handler that calls runtime.Goexit (settled,
// redelivered, and the subscription keeps consuming with Concurrency 1),
// returns an error whose Error method panics (dead-lettered without a crash,
// the reason saying so), or changes its payload; Shutdown called from inside
// a byte-face handler; Publish and Subscribe racing concurrent Closes of the broker, or
// of the Watermill publisher and subscriber (nothing accepted is lost);
// messages taken ahead and handed back by Close, or out unacked on a
// Watermill channel at Close (redelivered to the group, not dead-lettered);
// Ack and Nack on one message (the first wins); a Watermill message whose
// context is canceled; and topics whose dead-letter topic would be invalid
// (refused by Subscribe on both faces).
//
// # Capabilities
//
// What a backend cannot promise it declares in [Capabilities]; the zero value
// is the conservative choice, and a sub-test that needs an undeclared
// capability is skipped with the reason, never failed:
//
//   - Persistent: stored messages survive a restart of the server. Checked
//     only with [Harness].Restart.
//   - Ordered: with Concurrency 1 and one subscription, messages are handled
//     in publish order.
//   - MaxPayload: the largest payload accepted; a larger one must be rejected
//     with [relay.ErrPayloadTooLarge] before anything is sent.
//   - Telemetry: the backend honours Config.TracerProvider, MeterProvider and
//     Propagators. [TestTelemetry] then checks, with the OpenTelemetry SDK's
//     in-memory recorders, that a message is one trace from either face to
//     the other, that baggage travels with it (with the Baggage
//     propagator), that each delivery attempt is a process span with its
//     delivery count, that the delivery-outcome counter and the consumer lag
//     gauge read what happened (lag 1,000 with no consumer running, 0 once
//     consumed), and that a message without trace context or with a
//     malformed traceparent starts a new trace and is delivered.
//   - Delayed: the backend can delay on the server at hand, and the
//     Watermill publisher honours [relay.MetadataDelayedUntil]
//     (due order, nothing early, every group once, a malformed value refused
//     with [relay.ErrInvalidDelay], a batch with one malformed value refused
//     whole with none of it stored, a due time beyond the maximum refused,
//     10,000 messages due at one instant, with Restart a restart between
//     publish and due time, Watermill's delay.NewPublisher). The
//     byte face's delayed rows (due order, nothing early, every group once, a
//     past due time at once, a due time beyond the maximum refused, lateness
//     logged with -v, and with Restart a restart between publish and due
//     time) run when Delayed is set and the broker implements
//     [relay.DelayedPublisher].
//   - RetryAfter: a handler's [relay.RetryAfter] error, and a Nack behind
//     [relay.NackReason], delay the redelivery by at least its wait.
//
// [DeriveFeatures] documents how Capabilities become the flags of Watermill's
// suite; [Harness].WatermillFeatures may change them.
//
// # Timing and isolation
//
// The suite configures brokers with [DefaultConfig]: short backoffs (20 to
// 100 milliseconds), MaxDeliver 3 and a 2 second AckWait, so that retries and
// dead letters show within a second. Every sub-test uses fresh topics
// ([NewTopic]) and groups ([NewGroup]), so one shared server serves the whole
// suite. Every wait polls and is bounded (up to 30 seconds for the largest
// loads, returning as soon as its condition holds); -short shrinks the
// largest loads. The byte-face suite takes a few seconds on the memory
// backend. Do not run TestBroker in parallel with other tests: one sub-test
// counts goroutines.
package pubsubtest
