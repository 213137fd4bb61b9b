package memory

import (
	"log/slog"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/option"
	"github.com/go-relay/relay/internal/telemetry"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Defaults of the options. The option docs link to them. DefaultMaxDeliver,
// DefaultMinBackoff and DefaultMaxBackoff are the same in every relay backend:
// [relay.DefaultMaxDeliver], [relay.DefaultMinBackoff] and
// [relay.DefaultMaxBackoff].
const (
	// DefaultGroup is the consumer group of a [Broker] or [Subscriber] made
	// without [WithGroup].
	DefaultGroup = "go-relay"
	// DefaultConcurrency is the number of handlers that run at once per
	// subscription without [WithConcurrency].
	DefaultConcurrency = 8
	// DefaultMaxDeliver is the number of deliveries, including the first,
	// without [WithMaxDeliver].
	DefaultMaxDeliver = 3
	// DefaultMinBackoff is the shortest wait before a redelivery without
	// [WithBackoff]; see WithBackoff for the rule of the waits.
	DefaultMinBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff is the longest wait before a redelivery without
	// [WithBackoff].
	DefaultMaxBackoff = 10 * time.Second
	// DefaultCapacity is the number of messages, acknowledged or not, that a
	// topic of a [Hub] keeps without [WithCapacity].
	DefaultCapacity = 65536
)

// DefaultDeadLetterTopic returns the dead-letter topic of topic used without
// [WithDeadLetterTopic]: topic + ".dead".
func DefaultDeadLetterTopic(topic string) string { return relay.DefaultDeadLetterTopic(topic) }

// Option configures a [Broker], [Publisher] or [Subscriber]. Options are
// applied in order; a later option overrides an earlier one. An out-of-range
// value, or a nil Option, makes the constructor return an error wrapping
// [relay.ErrInvalidOption].
type Option func(*config) error

type config struct {
	hub         *Hub
	group       string
	concurrency int
	policy      delivery.Policy
	native      bool
	logger      *slog.Logger
	tel         telemetry.Config
	maxDelay    time.Duration
}

func newConfig(opts []Option) (config, error) {
	c := config{
		group:       DefaultGroup,
		concurrency: DefaultConcurrency,
		policy:      delivery.DefaultPolicy(),
		native:      true,
		logger:      slog.Default(),
		maxDelay:    relay.DefaultMaxDelay,
	}
	if err := option.Apply(pkg, &c, opts); err != nil {
		return config{}, err
	}
	if err := c.policy.Validate(pkg); err != nil {
		return config{}, err
	}
	return c, nil
}

const pkg = "memory"

func invalid(format string, args ...any) error {
	return option.Invalid(pkg, format, args...)
}

// WithHub makes a [Broker] use hub, so that it sees the topics of every other
// broker, publisher and subscriber on hub. Without it, [NewBroker] makes a
// private hub. A nil hub is an error wrapping [relay.ErrInvalidOption].
//
// [NewPublisher] and [NewSubscriber] take their hub as an argument; passing
// them WithHub with a different hub is an error.
func WithHub(hub *Hub) Option {
	return func(c *config) error {
		if hub == nil {
			return invalid("nil hub")
		}
		c.hub = hub
		return nil
	}
}

// WithGroup sets the consumer group, by default [DefaultGroup]. Subscriptions
// of one group on one topic compete for its messages (each message goes to
// one of them); every group gets every message. The group must not be empty.
func WithGroup(group string) Option {
	return func(c *config) error {
		return option.Group(pkg, &c.group, group)
	}
}

// WithConcurrency sets how many handlers run at once per subscription, by
// default [DefaultConcurrency]; n must be from 1 to [relay.MaxConcurrency]
// (65536). With n = 1 a subscription
// handles messages in publish order while none fails.
func WithConcurrency(n int) Option {
	return func(c *config) error {
		return option.Concurrency(pkg, &c.concurrency, n)
	}
}

// WithMaxDeliver sets the number of deliveries of a message, including the
// first, after which a failing message goes to the dead-letter topic; by
// default [DefaultMaxDeliver] (3, [relay.DefaultMaxDeliver]). n must be at
// least 1; it has no upper bound (math.MaxInt retries for ever). It has no
// effect with WithNativeRetries(false).
func WithMaxDeliver(n int) Option {
	return func(c *config) error {
		return option.MaxDeliver(pkg, &c.policy, n)
	}
}

// WithBackoff bounds the wait before a failed message is redelivered.
// After the k-th failed delivery of a message the step is min·2^(k-1)
// capped at max, and the wait is drawn uniformly from [step, min(2·step,
// max)]: never below min, never above max.
// Defaults: [DefaultMinBackoff] (100ms) and [DefaultMaxBackoff] (10s), those
// of [relay.DefaultMinBackoff] and [relay.DefaultMaxBackoff]. min must be at
// least [relay.MinBackoffFloor] (1ms) and max at least min; max has no upper
// bound.
func WithBackoff(min, max time.Duration) Option {
	return func(c *config) error {
		return option.Backoff(pkg, &c.policy, min, max)
	}
}

// WithDeadLetterTopic sets the function that names the dead-letter topic of a
// topic, by default [DefaultDeadLetterTopic] (topic + ".dead", as
// [relay.DefaultDeadLetterTopic]). Dead letters
// are published on the same [Hub]. A nil function is an error.
func WithDeadLetterTopic(name func(topic string) string) Option {
	return func(c *config) error {
		return option.DeadLetterTopic(pkg, &c.policy, name)
	}
}

// WithLogger sets the logger of what happens in the background, by default
// [slog.Default]. A nil logger is an error. Levels, the same in every relay
// backend:
//
//   - Debug: a delivery failed and will be delivered again (handler error,
//     panic, runtime.Goexit or Nack); attributes topic, group, id, attempt,
//     error.
//   - Warn: a message was written to its dead-letter topic; attributes
//     topic, group, id, attempts, reason, dead_letter_topic.
//   - Error: a delivery could not be settled (its dead letter could not be
//     stored, the dead-letter topic being full until the subscription
//     stopped): the message stays on its topic and is delivered again.
//
// The memory backend has no server, so it has no transient backend trouble
// to report at Warn. Every record of a subscription carries backend=memory,
// group and topic; the failed-handler, dead-letter and settle records have
// the same messages and keys on every backend ("<backend>: handler failed",
// "<backend>: message dead-lettered", "<backend>: settle failed; the message
// stays pending").
func WithLogger(logger *slog.Logger) Option {
	return func(c *config) error {
		return option.Logger(pkg, &c.logger, logger)
	}
}

// WithNativeRetries says whether the memory engine applies max deliver and
// dead letters itself, as the NATS and Redis backends do (true, the default),
// or behaves as a plain queue (false): a failed delivery is then redelivered
// after the backoff, forever, never dead-lettered, whatever the error, and
// [Broker.HandlesRetries] reports false so that the retrier package supplies
// attempts and dead letters.
func WithNativeRetries(native bool) Option {
	return func(c *config) error {
		c.native = native
		return nil
	}
}

// WithTracerProvider sets the provider of the tracer that records a producer
// span per published message ("send <topic>") and a consumer span per
// delivery attempt ("process <topic>"); by default the global one
// (otel.GetTracerProvider, read when the value is made, which forwards to an
// SDK installed later). A nil provider is an error. The package doc's
// Telemetry section lists the spans and their attributes.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error {
		return option.TracerProvider(pkg, &c.tel, tp)
	}
}

// WithMeterProvider sets the provider of the meter that records relay's
// metrics (messages sent and consumed, delivery outcomes, durations, messages
// held, consumer lag); by default the global one (otel.GetMeterProvider,
// read when the value is made). A nil provider is an error.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		return option.MeterProvider(pkg, &c.tel, mp)
	}
}

// WithPropagators sets the propagator that writes the trace context into a
// published message's metadata (W3C Trace Context: traceparent, tracestate;
// baggage when p includes it) and reads it from a delivered one; by default
// the global one (otel.GetTextMapPropagator, read when the value is made). A
// nil propagator is an error.
func WithPropagators(p propagation.TextMapPropagator) Option {
	return func(c *config) error {
		return option.Propagators(pkg, &c.tel, p)
	}
}

// WithMaxDelay sets how far ahead a due time may be, by default
// [relay.DefaultMaxDelay] (30 days): [Broker.PublishAt] and a Watermill
// message's [relay.MetadataDelayedUntil] further ahead get an error wrapping
// [relay.ErrInvalidDelay]. d must be from 1ms to [relay.MaxDelayLimit] (10
// years).
func WithMaxDelay(d time.Duration) Option {
	return func(c *config) error {
		return option.MaxDelay(pkg, &c.maxDelay, d)
	}
}

// WithMaxRetryAfter caps the wait that a handler's [relay.RetryAfter] error
// asks for, by default [relay.DefaultMaxRetryAfter] (1 hour): the failed
// delivery is redelivered after the larger of the backoff and the capped
// wait. d must be from 0 (RetryAfter adds nothing to the backoff) to
// [relay.MaxRetryAfterLimit] (30 days). With WithNativeRetries(false) it has
// no effect: the retrier then decides.
func WithMaxRetryAfter(d time.Duration) Option {
	return func(c *config) error {
		return option.MaxRetryAfter(pkg, &c.policy, d)
	}
}

// HubOption configures a [Hub]. An out-of-range value, or a nil HubOption,
// makes [NewHub] return an error wrapping [relay.ErrInvalidOption].
type HubOption func(*hubConfig) error

type hubConfig struct {
	capacity int
}

// WithCapacity sets how many messages one topic of the hub keeps, by default
// [DefaultCapacity]: acknowledged messages too, so that a group created later
// gets them, as from a NATS or Redis stream. When a topic is full, Publish
// drops the oldest message that every group of the topic has acknowledged to
// make room; when there is none (a group has not acknowledged any of them,
// or the topic has no group yet), it blocks until a group acknowledges one,
// its context is done or the publishing value is closed. A hub thus holds up
// to n messages per topic in memory, consumed or not. n must be at least 1;
// it has no upper bound (nothing is allocated ahead: math.MaxInt means
// unbounded).
func WithCapacity(n int) HubOption {
	return func(c *hubConfig) error {
		if n < 1 {
			return invalid("capacity %d, must be at least 1", n)
		}
		c.capacity = n
		return nil
	}
}
