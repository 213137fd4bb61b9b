package pubsubtest

import (
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/go-relay/relay"
)

// Config is what the suite asks of each broker, publisher or subscriber it
// makes. A harness maps every field onto the backend's options; a backend that
// cannot honour a field cannot pass the sub-tests that rely on it.
type Config struct {
	// Group is the consumer group. Values made with the same Group compete for a
	// topic's messages; values with different groups each get every message.
	Group string
	// MaxDeliver is the number of deliveries, including the first, before a
	// failing message goes to the dead-letter topic.
	MaxDeliver int
	// MinBackoff and MaxBackoff bound the wait before a failed message is
	// redelivered. The suite uses short ones (tens of milliseconds).
	MinBackoff, MaxBackoff time.Duration
	// Concurrency is the number of handlers that may run at once per
	// subscription.
	Concurrency int
	// AckWait is how long the backend waits for a consumer that took a message
	// and went silent before it gives the message to another (JetStream's ack
	// wait, Redis Streams' claim timeout). The suite uses a short one.
	AckWait time.Duration
	// Logger, when not nil, is the logger the backend must write its
	// background records to (its WithLogger option). The sub-tests of the
	// log records set it; a harness that ignores it has them skipped with a
	// reason.
	Logger *slog.Logger
	// DeadLetterTopic, when not nil, names the dead-letter topic of a topic
	// (the backend's WithDeadLetterTopic option); nil keeps the backend's
	// default, the topic plus ".dead". Only the sub-tests of dead-letter
	// topic validity and of a failed settle set it (the latter to a
	// function that names an invalid topic once Subscribe has returned); a
	// harness that ignores it has them skipped with a reason.
	DeadLetterTopic func(topic string) string
	// TracerProvider, MeterProvider and Propagators, when not nil, are what
	// the backend must record spans and metrics with and carry the trace
	// context by (its WithTracerProvider, WithMeterProvider and
	// WithPropagators options). [TestTelemetry] sets them to the SDK's
	// in-memory recorders.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagators    propagation.TextMapPropagator
}

// Harness is what a backend author fills in to run the suite. NewBroker is
// required by [TestBroker]; NewPublisher and NewSubscriber by [TestWatermill].
//
// Everything the harness makes within one test must share one topic space
// (one server, one in-process hub): a message published by one is visible to
// the others. The suite closes what it gets; the harness closes what it made
// itself (connections, servers) with t.Cleanup. Unless [Config].DeadLetterTopic
// says otherwise, the harness keeps the backend's default dead-letter topic,
// the topic plus ".dead", which the suite subscribes to.
type Harness struct {
	// NewBroker returns a broker configured by cfg, or an error.
	NewBroker func(t *testing.T, cfg Config) (relay.Broker, error)
	// NewPublisher returns a Watermill publisher configured by cfg.
	NewPublisher func(t *testing.T, cfg Config) (message.Publisher, error)
	// NewSubscriber returns a Watermill subscriber configured by cfg.
	NewSubscriber func(t *testing.T, cfg Config) (message.Subscriber, error)
	// NewInspector returns an inspector over the topic space of the values
	// above; [TestInspector] needs it. The harness closes the client under it.
	NewInspector func(t *testing.T) relay.Inspector
	// Restart, when set, restarts the backend's server in place (same address,
	// same store) while brokers stay open. Sub-tests of reconnection and
	// persistence across restarts need it, and skip with a reason without it.
	Restart func(t *testing.T)
	// Capabilities says what the backend guarantees.
	Capabilities Capabilities
	// WatermillFeatures, when set, receives the features [TestWatermill]
	// derived from Capabilities for Watermill's universal suite and returns
	// the features to use: a backend may declare what Capabilities cannot say,
	// such as a RestartServiceCommand or NewSubscriberReceivesOldMessages.
	WatermillFeatures func(derived tests.Features) tests.Features
}

// DefaultConfig returns the configuration the suite uses unless a sub-test
// needs another: a fresh unique Group (see [NewGroup]), MaxDeliver 3,
// backoff 20ms to 100ms, Concurrency 4 and AckWait 2s. The timings are short
// so that retries and dead letters show within a second.
func DefaultConfig() Config {
	return Config{
		Group:       NewGroup(),
		MaxDeliver:  3,
		MinBackoff:  20 * time.Millisecond,
		MaxBackoff:  100 * time.Millisecond,
		Concurrency: 4,
		AckWait:     2 * time.Second,
	}
}

// Capabilities declares what a backend guarantees. The zero value is the
// conservative choice: a sub-test whose guarantee is not declared is skipped
// with a reason, never failed.
type Capabilities struct {
	// Persistent is true when stored messages survive the broker values that
	// published them, and a restart of the server (with Restart).
	Persistent bool
	// Ordered is true when, with Concurrency 1 and one subscription, messages
	// are handled in publish order (while no delivery fails).
	Ordered bool
	// MaxPayload is the largest payload in bytes the backend accepts; 0 means
	// the suite does not test an over-limit payload.
	MaxPayload int
	// Telemetry is true when the backend honours Config.TracerProvider,
	// MeterProvider and Propagators: spans, metrics (the consumer lag gauge
	// included) and the trace context in the message, as [TestTelemetry]
	// checks. Without it TestTelemetry skips, saying so.
	Telemetry bool
	// Delayed is true when the backend can delay messages on the server at
	// hand (a NATS server older than 2.12 cannot): the Watermill publisher
	// honours [relay.MetadataDelayedUntil] (Watermill's
	// delay.DelayedUntilKey): a message carrying it is delivered to every
	// group, no earlier than its time, and a malformed value is refused with
	// [relay.ErrInvalidDelay], storing none of the messages of that Publish
	// call. The byte face's delayed rows run when Delayed
	// is true and the broker implements [relay.DelayedPublisher].
	Delayed bool
	// RetryAfter is true when a handler's [relay.RetryAfter] error (on the
	// Watermill face: a Nack behind [relay.NackReason]) delays the
	// redelivery by at least its wait.
	RetryAfter bool
}
