package natsjs

import (
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/option"
	"github.com/go-relay/relay/internal/telemetry"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Defaults of the options. Every [Option] that is not given keeps these.
// DefaultMaxDeliver, DefaultMinBackoff and DefaultMaxBackoff are those of
// every relay backend: [relay.DefaultMaxDeliver], [relay.DefaultMinBackoff]
// and [relay.DefaultMaxBackoff].
const (
	// DefaultGroup is the consumer group of [WithGroup]: the durable consumer
	// name (after [ConsumerName]).
	DefaultGroup = "go-relay"
	// DefaultMaxDeliver is the number of deliveries, including the first, of
	// [WithMaxDeliver].
	DefaultMaxDeliver = 3
	// DefaultAckWait is the lease of a delivery of [WithAckWait].
	DefaultAckWait = 30 * time.Second
	// DefaultMinBackoff and DefaultMaxBackoff bound the redelivery delay of
	// [WithBackoff].
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
	// DefaultConcurrency is the number of handlers per subscription of
	// [WithConcurrency].
	DefaultConcurrency = 8
	// DefaultPrefetch is the number of messages a subscription fetches ahead
	// of its handlers, of [WithPrefetch].
	DefaultPrefetch = 256
	// DefaultRequestTimeout bounds, by default, the calls that have no deadline
	// of their own ([WithRequestTimeout]).
	DefaultRequestTimeout = 30 * time.Second
)

// Ranges of the options that take a duration.
const (
	// MinAckWait and MaxAckWait bound [WithAckWait]. The NATS server accepts
	// any positive ack wait, but relay extends the lease of every message it
	// holds every third of the ack wait, and the server re-checks its pending
	// messages as often: a tiny ack wait burns a core on both. A consumer that
	// died keeps its messages for up to the ack wait, so over a day is taken
	// for a mistake.
	MinAckWait = 100 * time.Millisecond
	MaxAckWait = 24 * time.Hour
	// MinRequestTimeout and MaxRequestTimeout bound [WithRequestTimeout].
	MinRequestTimeout = time.Millisecond
	MaxRequestTimeout = 24 * time.Hour
)

// The defaults above are those of every relay backend: these fail to compile
// if they ever differ from the shared ones.
var (
	_ [DefaultMaxDeliver - relay.DefaultMaxDeliver]struct{} = [relay.DefaultMaxDeliver - DefaultMaxDeliver]struct{}{}
	_ [DefaultMinBackoff - relay.DefaultMinBackoff]struct{} = [relay.DefaultMinBackoff - DefaultMinBackoff]struct{}{}
	_ [DefaultMaxBackoff - relay.DefaultMaxBackoff]struct{} = [relay.DefaultMaxBackoff - DefaultMaxBackoff]struct{}{}
)

// Option configures a [Broker], [Publisher] or [Subscriber]. The same Option
// values work for all three; options that only concern consuming are ignored
// by a Publisher. An invalid value, or a nil Option, makes the constructor
// return an error wrapping [relay.ErrInvalidOption].
type Option func(*config) error

type config struct {
	group          string
	policy         delivery.Policy
	ackWait        time.Duration
	concurrency    int
	prefetch       int
	requestTimeout time.Duration
	maxDelay       time.Duration
	logger         *slog.Logger
	streamConfig   func(*jetstream.StreamConfig)
	consumerConfig func(*jetstream.ConsumerConfig)
	tel            telemetry.Config
}

func newConfig(opts []Option) (config, error) {
	c := config{
		group:          DefaultGroup,
		policy:         delivery.DefaultPolicy(),
		ackWait:        DefaultAckWait,
		concurrency:    DefaultConcurrency,
		prefetch:       DefaultPrefetch,
		requestTimeout: DefaultRequestTimeout,
		maxDelay:       relay.DefaultMaxDelay,
		logger:         slog.Default(),
	}
	if err := option.Apply(pkg, &c, opts); err != nil {
		return c, err
	}
	if err := c.policy.Validate(pkg); err != nil {
		return c, err
	}
	return c, nil
}

const pkg = "natsjs"

func invalid(format string, args ...any) error {
	return option.Invalid(pkg, format, args...)
}

// WithGroup sets the consumer group, [DefaultGroup] by default. Brokers and
// Subscribers of one group share one durable pull consumer per topic, named
// [ConsumerName](group), and compete for its messages; different groups each
// get every message. It must not be empty; any other string is accepted:
// the NATS server (v2.15, server/jetstream.go, isValidAssetName) refuses
// consumer names with white space, '.', '*', '>', '/' or '\', and
// [ConsumerName] rewrites such a group ("a b*>" → "a_b___" plus a hash), so
// that it never reaches the server as it is. All members of a group should be
// built with the same options: each one creates or updates the shared
// consumer with its own configuration.
func WithGroup(group string) Option {
	return func(c *config) error {
		return option.Group(pkg, &c.group, group)
	}
}

// WithMaxDeliver sets the number of deliveries of a message, including the
// first, after which a failing message goes to the dead-letter topic;
// [DefaultMaxDeliver] (3) by default. It must be at least 1; it has no upper
// bound (math.MaxInt retries for ever). It is counted by
// relay from JetStream's delivery count, not set on the consumer: see the
// package documentation.
func WithMaxDeliver(n int) Option {
	return func(c *config) error {
		return option.MaxDeliver(pkg, &c.policy, n)
	}
}

// WithAckWait sets the consumer's ack wait: how long JetStream waits for a
// consumer that took a message and went silent before it delivers the message
// again (to any member of the group). [DefaultAckWait] (30 s) by default; it
// must be from [MinAckWait] (100 ms) to [MaxAckWait] (24 h). While a handler
// runs, relay extends the lease every third of the ack wait, so a handler may
// run longer than the ack wait.
func WithAckWait(d time.Duration) Option {
	return func(c *config) error {
		return option.Duration(pkg, "ack wait", &c.ackWait, d, MinAckWait, MaxAckWait)
	}
}

// WithBackoff bounds the delay before a failed delivery is redelivered.
// After the k-th failed delivery of a message the step is min·2^(k-1)
// capped at max, and the wait is drawn uniformly from [step, min(2·step,
// max)]: never below min, never above max.
// Defaults [DefaultMinBackoff] (100 ms) and [DefaultMaxBackoff] (10 s), those
// of [relay.DefaultMinBackoff] and [relay.DefaultMaxBackoff]. min must be at
// least [relay.MinBackoffFloor] (1 ms) and max at least min; max has no upper
// bound.
func WithBackoff(min, max time.Duration) Option {
	return func(c *config) error {
		return option.Backoff(pkg, &c.policy, min, max)
	}
}

// WithMaxDelay sets how far ahead a due time may be, by default
// [relay.DefaultMaxDelay] (30 days): [Broker.PublishAt] and a Watermill
// message's [relay.MetadataDelayedUntil] further ahead get an error wrapping
// [relay.ErrInvalidDelay], and nothing is stored. d must be from 1ms to
// [relay.MaxDelayLimit] (10 years). A stream's max age (MaxAge) shorter than
// the delay removes the schedule before it fires: keep it longer.
func WithMaxDelay(d time.Duration) Option {
	return func(c *config) error {
		return option.MaxDelay(pkg, &c.maxDelay, d)
	}
}

// WithMaxRetryAfter caps the wait that a handler's [relay.RetryAfter] error
// asks for, by default [relay.DefaultMaxRetryAfter] (1 hour): the failed
// message is negatively acknowledged with a delay (NakWithDelay) of the
// larger of the backoff and the capped wait. d must be from 0 (RetryAfter
// adds nothing to the backoff) to [relay.MaxRetryAfterLimit] (30 days).
func WithMaxRetryAfter(d time.Duration) Option {
	return func(c *config) error {
		return option.MaxRetryAfter(pkg, &c.policy, d)
	}
}

// WithDeadLetterTopic sets the function that names a topic's dead-letter
// topic; by default topic + ".dead" ([relay.DefaultDeadLetterTopic]). The name it returns must pass
// [relay.ValidateTopic]; if it does not, dead-lettering fails, is logged, and
// the message stays pending.
func WithDeadLetterTopic(f func(topic string) string) Option {
	return func(c *config) error {
		return option.DeadLetterTopic(pkg, &c.policy, f)
	}
}

// WithConcurrency sets how many handlers (Watermill face: messages awaiting
// Ack or Nack) run at once per subscription; [DefaultConcurrency] (8) by
// default, from 1 to [relay.MaxConcurrency] (65536). With 1, messages are handled in stream order while none
// fails. A subscription holds at most n plus the prefetch ([WithPrefetch])
// unsettled messages.
func WithConcurrency(n int) Option {
	return func(c *config) error {
		return option.Concurrency(pkg, &c.concurrency, n)
	}
}

// WithPrefetch sets how many messages a subscription may fetch ahead of its
// handlers, beyond the [WithConcurrency] ones being handled; [DefaultPrefetch]
// (256) by default, from 0 to [relay.MaxPrefetch] (65536). Fetching ahead saves a round trip per
// message; the messages waiting are leased like those being handled (see
// [WithAckWait]), so they are not given to another member of the group, and
// they are returned to JetStream for immediate redelivery when the
// subscription stops. Lower it when handlers are slow and several
// subscriptions of a group should share a small backlog evenly; 0 fetches
// only for free handlers.
func WithPrefetch(n int) Option {
	return func(c *config) error {
		return option.Prefetch(pkg, &c.prefetch, n)
	}
}

// WithRequestTimeout bounds each server round trip that has no deadline of its
// own: a Publish whose context has no deadline (Watermill's Publish takes
// none), the stream and consumer set-up of Subscribe, and the dead-letter
// publish. [DefaultRequestTimeout] (30 s) by default; it must be from
// [MinRequestTimeout] (1 ms) to [MaxRequestTimeout] (24 h). Transient failures
// (disconnection, no responders, JetStream unavailable) are retried with
// backoff within this bound.
func WithRequestTimeout(d time.Duration) Option {
	return func(c *config) error {
		return option.Duration(pkg, "request timeout", &c.requestTimeout, d, MinRequestTimeout, MaxRequestTimeout)
	}
}

// WithLogger sets the logger of what happens in the background;
// slog.Default() by default. It must not be nil. Levels, the same in every
// relay backend:
//
//   - Debug: a handler failed (or its Watermill message was nacked) and the
//     message will be delivered again; attributes id, attempt, error.
//   - Warn: a message was written to its dead-letter topic; attributes
//     topic, id, attempts, reason, dead_letter_topic. Also transient backend
//     trouble that relay retries: a failed fetch, a lease not extended, a
//     flush of acknowledgements on stop.
//   - Error: a delivery could not be settled (ack, nak, or dead letter
//     failed: the message stays pending and comes back), or its metadata
//     could not be read.
//
// Every record carries backend=natsjs and group; those of a subscription
// carry topic. The failed-handler, dead-letter and settle records have the
// same messages and keys on every backend ("<backend>: handler failed",
// "<backend>: message dead-lettered", "<backend>: settle failed; the message
// stays pending").
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		return option.Logger(pkg, &c.logger, l)
	}
}

// WithStreamConfig lets f adjust the configuration of every stream relay
// creates (storage, replicas, retention limits, max age, duplicate window,
// ...). f gets relay's configuration: Name = [StreamName](topic), Subjects =
// [topic], file storage, limits retention. After f, relay sets Name and
// Subjects back. A stream that exists already is never changed (relay only
// adds the topic's subject to a stream of its name that lacks it): to change
// its settings, use `nats stream edit` or the JetStream API. Interest or limits retention keep fan-out to several groups
// working; work-queue retention allows one group per topic only.
func WithStreamConfig(f func(*jetstream.StreamConfig)) Option {
	return func(c *config) error {
		if f == nil {
			return invalid("nil stream config function")
		}
		c.streamConfig = f
		return nil
	}
}

// WithConsumerConfig lets f adjust the configuration of every durable consumer
// relay creates or updates (max ack pending, replicas, memory storage, deliver
// policy of a new group, ...). f gets relay's configuration; after f, relay
// sets back the fields its delivery contract relies on: Name and Durable
// ([ConsumerName] of the group), FilterSubject (the topic) and FilterSubjects
// (none), AckPolicy (explicit), AckWait ([WithAckWait]), MaxDeliver (-1,
// unlimited: relay counts deliveries itself) and BackOff (none: relay delays
// redeliveries itself).
func WithConsumerConfig(f func(*jetstream.ConsumerConfig)) Option {
	return func(c *config) error {
		if f == nil {
			return invalid("nil consumer config function")
		}
		c.consumerConfig = f
		return nil
	}
}

var errNilJetStream = errors.New("nil jetstream.JetStream")

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
// held, and the consumer lag and pending gauges read from the durable
// consumer's info: JetStream's num_pending and num_ack_pending); by default
// the global one (otel.GetMeterProvider, read when the value is made). A nil
// provider is an error.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		return option.MeterProvider(pkg, &c.tel, mp)
	}
}

// WithPropagators sets the propagator that writes the trace context into a
// published message's headers (W3C Trace Context: traceparent, tracestate;
// baggage when p includes it) and reads it from a delivered one; by default
// the global one (otel.GetTextMapPropagator, read when the value is made). A
// nil propagator is an error.
func WithPropagators(p propagation.TextMapPropagator) Option {
	return func(c *config) error {
		return option.Propagators(pkg, &c.tel, p)
	}
}
