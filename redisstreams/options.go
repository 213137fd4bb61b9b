package redisstreams

import (
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/option"
	"github.com/go-relay/relay/internal/telemetry"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Defaults of the options. The option docs link to them. DefaultMaxDeliver,
// DefaultMinBackoff and DefaultMaxBackoff are those of every relay backend:
// [relay.DefaultMaxDeliver], [relay.DefaultMinBackoff] and
// [relay.DefaultMaxBackoff].
const (
	// DefaultGroup is the consumer group of [WithGroup].
	DefaultGroup = "go-relay"
	// DefaultMaxDeliver is the number of deliveries, the first included, of
	// [WithMaxDeliver].
	DefaultMaxDeliver = 3
	// DefaultMinBackoff and DefaultMaxBackoff bound the redelivery wait of
	// [WithBackoff].
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
	// DefaultConcurrency is the number of handlers per subscription of
	// [WithConcurrency].
	DefaultConcurrency = 8
	// DefaultPrefetch is the number of entries read ahead of the handlers of
	// [WithPrefetch].
	DefaultPrefetch = 256
	// DefaultClaimTimeout is the idle time of [WithClaimTimeout].
	DefaultClaimTimeout = 30 * time.Second
	// DefaultBlockTimeout is the XREADGROUP block time of [WithBlockTimeout].
	DefaultBlockTimeout = 2 * time.Second
	// MinClaimTimeout is the smallest value [WithClaimTimeout] accepts: the
	// idle entries are looked for every half of it.
	MinClaimTimeout = 10 * time.Millisecond
	// MaxClaimTimeout is the largest value [WithClaimTimeout] accepts: a
	// consumer that died keeps its entries for that long.
	MaxClaimTimeout = 24 * time.Hour
	// MinBlockTimeout is the smallest value [WithBlockTimeout] accepts: an
	// idle subscription sends a read every block timeout.
	MinBlockTimeout = time.Millisecond
	// MaxBlockTimeout is the largest value [WithBlockTimeout] accepts: with
	// a client other than *redis.Client, Close may wait that long.
	MaxBlockTimeout = time.Minute
)

// The shared defaults above equal relay's: these fail to compile if they ever
// differ.
var (
	_ [DefaultMaxDeliver - relay.DefaultMaxDeliver]struct{} = [relay.DefaultMaxDeliver - DefaultMaxDeliver]struct{}{}
	_ [DefaultMinBackoff - relay.DefaultMinBackoff]struct{} = [relay.DefaultMinBackoff - DefaultMinBackoff]struct{}{}
	_ [DefaultMaxBackoff - relay.DefaultMaxBackoff]struct{} = [relay.DefaultMaxBackoff - DefaultMaxBackoff]struct{}{}
)

// Start positions for [WithStartID]: the ids a new consumer group starts
// reading after.
const (
	// StartOldest makes a new group deliver every entry still stored in the
	// stream, including those published before the group existed. It is the
	// default.
	StartOldest = "0"
	// StartNewest makes a new group deliver only entries added after it was
	// created (Redis' "$").
	StartNewest = "$"
)

// Option configures a [Broker], a [Publisher] or a [Subscriber]. The same
// Option values work for all three; an option that does not concern one of
// them (a group for a publisher) is accepted and ignored. An option checks its
// value when the constructor applies it: an invalid one (or a nil Option)
// makes the constructor return an error wrapping [relay.ErrInvalidOption].
type Option func(*config) error

type config struct {
	group        string
	policy       delivery.Policy
	concurrency  int
	prefetch     int
	consumer     string
	consumerSet  bool
	claimTimeout time.Duration
	blockTimeout time.Duration
	maxLen       int64
	startID      string
	maxDelay     time.Duration
	logger       *slog.Logger
	// replicaAcks and replicaTimeout are WithReplicaAcks'; 0 sends no WAIT.
	replicaAcks    int
	replicaTimeout time.Duration
	readerHooks    []redis.Hook // tests: hooks of the subscriptions' own read clients
	tel            telemetry.Config
}

func newConfig(opts []Option) (config, error) {
	c := config{
		group:        DefaultGroup,
		policy:       delivery.DefaultPolicy(),
		concurrency:  DefaultConcurrency,
		prefetch:     DefaultPrefetch,
		claimTimeout: DefaultClaimTimeout,
		blockTimeout: DefaultBlockTimeout,
		startID:      StartOldest,
		maxDelay:     relay.DefaultMaxDelay,
		logger:       slog.Default(),
	}
	if err := option.Apply(pkg, &c, opts); err != nil {
		return c, err
	}
	return c, c.validate()
}

// invalid returns an error wrapping relay.ErrInvalidOption.
func invalid(format string, args ...any) error {
	return option.Invalid(pkg, format, args...)
}

// validate checks what no single option can: the policy as a whole. Each
// option checked its own value when it was applied.
func (c config) validate() error {
	return c.policy.Validate(pkg)
}

// WithGroup sets the consumer group (Redis' XGROUP) that subscriptions join;
// it defaults to [DefaultGroup]. Subscriptions of one group compete for a
// stream's entries; each group gets every entry. An empty name is invalid.
func WithGroup(name string) Option {
	return func(c *config) error {
		return option.Group(pkg, &c.group, name)
	}
}

// WithMaxDeliver sets how many times an entry is delivered, the first delivery
// included, before a failing entry goes to the dead-letter topic; it defaults
// to [DefaultMaxDeliver] (3) and must be at least 1; it has no upper bound
// (math.MaxInt retries for ever). The count is Redis'
// delivery counter of the pending entry, so deliveries to consumers that died
// count too.
func WithMaxDeliver(n int) Option {
	return func(c *config) error {
		return option.MaxDeliver(pkg, &c.policy, n)
	}
}

// WithBackoff bounds the wait before a failed entry is delivered again.
// After the k-th failed delivery of a message the step is min·2^(k-1)
// capped at max, and the wait is drawn uniformly from [step, min(2·step,
// max)]: never below min, never above max.
// The defaults are [DefaultMinBackoff] (100 ms) and [DefaultMaxBackoff]
// (10 s), those of [relay.DefaultMinBackoff] and [relay.DefaultMaxBackoff];
// min must be at least [relay.MinBackoffFloor] (1 ms) and max at least min;
// max has no upper bound. A wait
// longer than the claim timeout ([WithClaimTimeout]) is cut short when another
// consumer of the group claims the entry.
func WithBackoff(min, max time.Duration) Option {
	return func(c *config) error {
		return option.Backoff(pkg, &c.policy, min, max)
	}
}

// WithMaxDelay sets how far ahead a due time may be, by default
// [relay.DefaultMaxDelay] (30 days): [Broker.PublishAt] and a Watermill
// message's [relay.MetadataDelayedUntil] further ahead get an error wrapping
// [relay.ErrInvalidDelay], and nothing is stored. d must be from 1ms to
// [relay.MaxDelayLimit] (10 years).
func WithMaxDelay(d time.Duration) Option {
	return func(c *config) error {
		return option.MaxDelay(pkg, &c.maxDelay, d)
	}
}

// WithMaxRetryAfter caps the wait that a handler's [relay.RetryAfter] error
// asks for, by default [relay.DefaultMaxRetryAfter] (1 hour): the failed
// entry is delivered again after the larger of the backoff and the capped
// wait, by the same local timer as the backoff. d must be from 0
// (RetryAfter adds nothing to the backoff) to [relay.MaxRetryAfterLimit] (30
// days). As with [WithBackoff], a wait longer than the claim timeout
// ([WithClaimTimeout]) is cut short when another consumer of the group claims
// the entry, and the entry of a consumer that died is claimed after the claim
// timeout.
func WithMaxRetryAfter(d time.Duration) Option {
	return func(c *config) error {
		return option.MaxRetryAfter(pkg, &c.policy, d)
	}
}

// WithDeadLetterTopic sets the function that names the dead-letter topic of a
// topic; it defaults to topic + ".dead" ([relay.DefaultDeadLetterTopic]). The dead-letter topic is the Redis
// stream of that name. A nil function is invalid.
func WithDeadLetterTopic(f func(topic string) string) Option {
	return func(c *config) error {
		return option.DeadLetterTopic(pkg, &c.policy, f)
	}
}

// WithConcurrency sets how many handlers (Watermill face: messages awaiting
// Ack or Nack) run at once per subscription; it defaults to
// [DefaultConcurrency] (8) and must be from 1 to [relay.MaxConcurrency]
// (65536). With 1, entries are handled
// in stream order while none fails. A subscription holds at most n plus the
// prefetch ([WithPrefetch]) entries that are read and not yet acknowledged.
func WithConcurrency(n int) Option {
	return func(c *config) error {
		return option.Concurrency(pkg, &c.concurrency, n)
	}
}

// WithPrefetch sets how many entries a subscription may read ahead of its
// handlers, beyond the [WithConcurrency] ones being handled; it defaults to
// [DefaultPrefetch] (256) and must be from 0 to [relay.MaxPrefetch] (65536).
// Reading ahead saves a round
// trip per entry. The entries waiting count as held: their idle time is reset
// like that of running handlers, so no other consumer of the group claims
// them, and when the subscription stops they are handed back with their
// delivery counter restored and their idle time set to the claim timeout, so
// that another consumer claims them at once. Lower it when handlers are slow
// and several subscriptions of a group should share a small backlog evenly;
// 0 reads only for free handlers.
func WithPrefetch(n int) Option {
	return func(c *config) error {
		return option.Prefetch(pkg, &c.prefetch, n)
	}
}

// WithConsumer sets the consumer name of the first subscription of each topic;
// later subscriptions to the same topic by the same value get name-2, name-3,
// and so on. By default a name is made of the host name and a random suffix,
// new for every Broker or Subscriber. A stable name lets a restarted process
// take back the entries it left pending at once, instead of after the claim
// timeout; it must then be unique among the live processes of the group. An
// empty name is invalid.
func WithConsumer(name string) Option {
	return func(c *config) error {
		if name == "" {
			return invalid("empty consumer name")
		}
		c.consumer, c.consumerSet = name, true
		return nil
	}
}

// WithClaimTimeout sets how long an entry pending on another consumer must be
// idle before this one claims it (XPENDING IDLE, then XCLAIM); it defaults to
// [DefaultClaimTimeout] (30 s) and must be from [MinClaimTimeout] (10 ms) to
// [MaxClaimTimeout] (24 h). It is how long the entries of a consumer that died wait for redelivery. A
// handler that runs longer is not claimed: its consumer resets the entry's idle
// time every third of the timeout while the handler runs.
func WithClaimTimeout(d time.Duration) Option {
	return func(c *config) error {
		return option.Duration(pkg, "claim timeout", &c.claimTimeout, d, MinClaimTimeout, MaxClaimTimeout)
	}
}

// WithBlockTimeout sets how long one XREADGROUP waits for new entries; it
// defaults to [DefaultBlockTimeout] (2 s) and must be from [MinBlockTimeout]
// (1 ms) to [MaxBlockTimeout] (1 min). With a
// *redis.Client or *redis.ClusterClient, Close ends a read in progress at
// once (the read runs on a connection of its own, which Close closes); with
// other clients go-redis cannot interrupt it, and Close waits up to this
// long for it.
func WithBlockTimeout(d time.Duration) Option {
	return func(c *config) error {
		return option.Duration(pkg, "block timeout", &c.blockTimeout, d, MinBlockTimeout, MaxBlockTimeout)
	}
}

// WithMaxLen caps each stream this value publishes to at about n entries
// (XADD MAXLEN ~ n): Redis drops the oldest entries, in whole macro-nodes, so
// a stream may hold somewhat more than n. Trimming does not look at consumer
// groups: an entry trimmed before a group read or acknowledged it is lost for
// that group, so pick n well above the backlog you expect. Zero, the default,
// turns trimming off; a negative n is invalid; there is no upper bound (Redis
// takes any 64-bit count). Dead-letter streams are never
// trimmed.
func WithMaxLen(n int64) Option {
	return func(c *config) error {
		if n < 0 {
			return invalid("max length %d, must not be negative", n)
		}
		c.maxLen = n
		return nil
	}
}

// WithStartID sets where a consumer group that Subscribe creates for the
// first time starts reading: [StartOldest] ("0", the default) delivers
// everything still stored, [StartNewest] ("$") only what is added afterwards,
// and an entry id delivers the entries after it: "<ms>-<seq>" or "<ms>"
// (sequence 0), decimal unsigned 64-bit numbers, as Redis' XGROUP CREATE
// takes them ("0-0", "1700000000000-3"). Any other id ("", "garbage", "1-*")
// is invalid, refused by the constructor rather than by Redis at Subscribe.
//
// It has no effect on a group that exists already. Nor does it apply to a
// group that a subscription had and lost (a Redis restart without
// persistence, an operator's XGROUP DESTROY): that group is created again at
// "0", so that nothing published while it was missing is skipped. After a
// restart without persistence the stream is new as well, so "0" delivers just
// what was published since; after XGROUP DESTROY of a stream that still holds
// entries, "0" delivers those entries again (at least once allows that).
func WithStartID(id string) Option {
	return func(c *config) error {
		return option.StreamID(pkg, &c.startID, id)
	}
}

// WithLogger sets the logger of the background work; it defaults to
// [slog.Default]. A nil logger is invalid. Levels, as in the other relay
// backends:
//
//   - Debug: a delivery failed and will be delivered again (handler error,
//     panic or Nack), with topic, id, attempt and error; a failed XACK that
//     will be retried;
//   - Info: pending entries claimed, a consumer group created again, idle
//     consumers removed;
//   - Warn: an entry written to the dead-letter topic (topic, id, attempts,
//     reason, dead_letter_topic); an entry removed by an operator (XDEL,
//     XTRIM, XGROUP DELCONSUMER) while it waited for its redelivery (topic,
//     id, attempt); Redis errors that are retried (failed reads, claims, idle
//     refreshes; acks still failing at Close); proto-max-bulk-len that
//     CONFIG GET could not read;
//   - Error: a delivery that could not be settled (the dead-letter write
//     failed): the entry stays pending.
//
// Every record of a subscription carries backend=redisstreams, group, topic
// and consumer; errors are under the key error. The failed-handler,
// dead-letter and settle records have the same messages and keys on every
// backend ("<backend>: handler failed", "<backend>: message dead-lettered",
// "<backend>: settle failed; the message stays pending").
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		return option.Logger(pkg, &c.logger, l)
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
// held, and the consumer lag and pending gauges, read with XINFO GROUPS as
// [Inspector.Topic] reads them); by default the global one
// (otel.GetMeterProvider, read when the value is made). A nil provider is an
// error.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		return option.MeterProvider(pkg, &c.tel, mp)
	}
}

// WithPropagators sets the propagator that writes the trace context into a
// published entry's metadata (W3C Trace Context: traceparent, tracestate;
// baggage when p includes it) and reads it from a delivered one; by default
// the global one (otel.GetTextMapPropagator, read when the value is made). A
// nil propagator is an error.
func WithPropagators(p propagation.TextMapPropagator) Option {
	return func(c *config) error {
		return option.Propagators(pkg, &c.tel, p)
	}
}
