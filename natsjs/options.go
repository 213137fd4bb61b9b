package natsjs

import (
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/option"
)

// Defaults of the options. Every [Option] that is not given keeps these.
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

// The defaults above are those of every relay backend: these fail to compile
// if they ever differ from the shared ones.
var (
	_ [DefaultMaxDeliver - delivery.DefaultMaxDeliver]struct{} = [delivery.DefaultMaxDeliver - DefaultMaxDeliver]struct{}{}
	_ [DefaultMinBackoff - delivery.DefaultMinBackoff]struct{} = [delivery.DefaultMinBackoff - DefaultMinBackoff]struct{}{}
	_ [DefaultMaxBackoff - delivery.DefaultMaxBackoff]struct{} = [delivery.DefaultMaxBackoff - DefaultMaxBackoff]struct{}{}
)

// Option configures a [Broker], [Publisher] or [Subscriber]. The same Option
// values work for all three; options that only concern consuming are ignored
// by a Publisher. An invalid value makes the constructor return an error
// wrapping [relay.ErrInvalidOption].
type Option func(*config) error

type config struct {
	group          string
	policy         delivery.Policy
	ackWait        time.Duration
	concurrency    int
	prefetch       int
	requestTimeout time.Duration
	logger         *slog.Logger
	streamConfig   func(*jetstream.StreamConfig)
	consumerConfig func(*jetstream.ConsumerConfig)
}

func newConfig(opts []Option) (config, error) {
	c := config{
		group:          DefaultGroup,
		policy:         delivery.DefaultPolicy(),
		ackWait:        DefaultAckWait,
		concurrency:    DefaultConcurrency,
		prefetch:       DefaultPrefetch,
		requestTimeout: DefaultRequestTimeout,
		logger:         slog.Default(),
	}
	for _, opt := range opts {
		if opt == nil {
			return c, invalid("nil option")
		}
		if err := opt(&c); err != nil {
			return c, err
		}
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
// get every message. It must not be empty. All members of a group should be
// built with the same options: each one creates or updates the shared
// consumer with its own configuration.
func WithGroup(group string) Option {
	return func(c *config) error {
		return option.Group(pkg, &c.group, group)
	}
}

// WithMaxDeliver sets the number of deliveries of a message, including the
// first, after which a failing message goes to the dead-letter topic;
// [DefaultMaxDeliver] (3) by default. It must be at least 1. It is counted by
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
// must be positive. While a handler runs, relay extends the lease every third
// of the ack wait, so a handler may run longer than the ack wait.
func WithAckWait(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("ack wait %v, must be positive", d)
		}
		c.ackWait = d
		return nil
	}
}

// WithBackoff sets the bounds of the delay before a failed delivery is
// redelivered: min after the first failure, doubling per failure up to max,
// of which the upper half is random. Defaults [DefaultMinBackoff] (100 ms) and
// [DefaultMaxBackoff] (10 s). min must be positive and max at least min.
func WithBackoff(min, max time.Duration) Option {
	return func(c *config) error {
		if min <= 0 || max < min {
			return invalid("backoff %v..%v, want 0 < min <= max", min, max)
		}
		c.policy.MinBackoff, c.policy.MaxBackoff = min, max
		return nil
	}
}

// WithDeadLetterTopic sets the function that names a topic's dead-letter
// topic; by default topic + ".dead". The name it returns must pass
// [relay.ValidateTopic]; if it does not, dead-lettering fails, is logged, and
// the message stays pending.
func WithDeadLetterTopic(f func(topic string) string) Option {
	return func(c *config) error {
		return option.DeadLetterTopic(pkg, &c.policy, f)
	}
}

// WithConcurrency sets how many handlers (Watermill face: messages awaiting
// Ack or Nack) run at once per subscription; [DefaultConcurrency] (8) by
// default, at least 1. With 1, messages are handled in stream order while none
// fails. A subscription holds at most n plus the prefetch ([WithPrefetch])
// unsettled messages.
func WithConcurrency(n int) Option {
	return func(c *config) error {
		return option.Concurrency(pkg, &c.concurrency, n)
	}
}

// WithPrefetch sets how many messages a subscription may fetch ahead of its
// handlers, beyond the [WithConcurrency] ones being handled; [DefaultPrefetch]
// (256) by default, at least 0. Fetching ahead saves a round trip per
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
// publish. [DefaultRequestTimeout] (30 s) by default; it must be positive.
// Transient failures (disconnection, no responders, JetStream unavailable)
// are retried with backoff within this bound.
func WithRequestTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("request timeout %v, must be positive", d)
		}
		c.requestTimeout = d
		return nil
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
// Every record carries broker=natsjs and group; those of a subscription
// carry topic.
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
