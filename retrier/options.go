package retrier

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

// Defaults of the retrier, the same as the native backends': those of
// [relay.DefaultMaxDeliver], [relay.DefaultMinBackoff] and
// [relay.DefaultMaxBackoff].
const (
	// DefaultMaxDeliver is the number of attempts per delivery, the first
	// included, when [WithMaxDeliver] is not given.
	DefaultMaxDeliver = 3
	// DefaultMinBackoff is the shortest wait after a failed attempt when
	// [WithBackoff] is not given.
	DefaultMinBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff is the longest wait between attempts when [WithBackoff]
	// is not given.
	DefaultMaxBackoff = 10 * time.Second
)

// The defaults above equal relay's: these fail to compile if they ever differ.
var (
	_ [DefaultMaxDeliver - relay.DefaultMaxDeliver]struct{} = [relay.DefaultMaxDeliver - DefaultMaxDeliver]struct{}{}
	_ [DefaultMinBackoff - relay.DefaultMinBackoff]struct{} = [relay.DefaultMinBackoff - DefaultMinBackoff]struct{}{}
	_ [DefaultMaxBackoff - relay.DefaultMaxBackoff]struct{} = [relay.DefaultMaxBackoff - DefaultMaxBackoff]struct{}{}
)

// Option configures [New]. Options are applied in order, a later one
// overriding an earlier one. A nil Option, or an option given an invalid
// value, makes New return an error wrapping [relay.ErrInvalidOption], and so
// does any option given for a broker that handles retries natively (see New).
type Option func(*config) error

type config struct {
	policy  delivery.Policy
	logger  *slog.Logger
	onError func(error)
	tel     telemetry.Config
}

func defaultConfig() config {
	return config{policy: delivery.DefaultPolicy(), logger: slog.Default()}
}

const pkg = "retrier"

func invalid(format string, args ...any) error {
	return option.Invalid(pkg, format, args...)
}

// WithMaxDeliver sets how many times a delivery is attempted in all, the first
// attempt included, before the message goes to the dead-letter topic. n must be
// at least 1; 1 means no retry; it has no upper bound (math.MaxInt retries
// for ever). It defaults to [DefaultMaxDeliver] (3).
func WithMaxDeliver(n int) Option {
	return func(c *config) error {
		return option.MaxDeliver(pkg, &c.policy, n)
	}
}

// WithBackoff bounds the wait between two attempts.
// After the k-th failed delivery of a message the step is min·2^(k-1)
// capped at max, and the wait is drawn uniformly from [step, min(2·step,
// max)]: never below min, never above max.
// min must be at least [relay.MinBackoffFloor] (1ms) and max at least min;
// max has no upper bound. They default to [DefaultMinBackoff] (100ms) and
// [DefaultMaxBackoff] (10s). The same backoff spaces the retries of a failed
// dead-letter publish.
func WithBackoff(min, max time.Duration) Option {
	return func(c *config) error {
		return option.Backoff(pkg, &c.policy, min, max)
	}
}

// WithMaxRetryAfter caps the wait that a handler's [relay.RetryAfter] error
// asks for, by default [relay.DefaultMaxRetryAfter] (1 hour): the next
// attempt comes after the larger of the backoff and the capped wait, and
// still counts as an attempt. d must be from 0 (RetryAfter adds nothing to
// the backoff) to [relay.MaxRetryAfterLimit] (30 days).
func WithMaxRetryAfter(d time.Duration) Option {
	return func(c *config) error {
		return option.MaxRetryAfter(pkg, &c.policy, d)
	}
}

// WithDeadLetterTopic sets the function that names the dead-letter topic of a
// topic. It defaults to appending ".dead" ("orders" → "orders.dead",
// [relay.DefaultDeadLetterTopic]). The
// function must be non-nil, safe for concurrent use, and return a topic that
// [relay.ValidateTopic] accepts; a message whose dead-letter topic is invalid
// is logged and left to the wrapped broker, which redelivers it.
func WithDeadLetterTopic(f func(topic string) string) Option {
	return func(c *config) error {
		return option.DeadLetterTopic(pkg, &c.policy, f)
	}
}

// WithLogger sets the logger of background events: failed attempts (Debug;
// a panic at Warn, with its stack), dead letters with their attempt count and last error (Warn), failed
// dead-letter publishes (Error). It must be non-nil and defaults to
// [slog.Default].
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		return option.Logger(pkg, &c.logger, l)
	}
}

// WithErrorHandler sets a function called with each background error, in
// addition to the logger: today, every failed attempt to publish a dead letter
// (the message is kept and the publish retried, see the package doc). It is
// called from the goroutine that delivered the message, so it must be safe for
// concurrent use and should return quickly. It must be non-nil; by default
// errors go to the logger only.
func WithErrorHandler(f func(error)) Option {
	return func(c *config) error {
		if f == nil {
			return invalid("nil error handler")
		}
		c.onError = f
		return nil
	}
}

// WithTracerProvider sets the provider of the tracer that records a
// "process <topic>" span (kind CONSUMER) per attempt the retrier makes, with
// relay.delivery.attempt and a retry or dead_letter event; by default the
// global one (otel.GetTracerProvider, read by [New]). A byte handler carries
// no context, so these spans are new roots: the wrapped broker's own process
// span is the one in the message's trace. A nil provider is an error.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error {
		return option.TracerProvider(pkg, &c.tel, tp)
	}
}

// WithMeterProvider sets the provider of the meter that records the
// retrier's delivery outcomes (relay.delivery.outcomes with
// messaging.system "relay") and attempt durations; by default the global one
// (otel.GetMeterProvider, read by [New]). A nil provider is an error.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		return option.MeterProvider(pkg, &c.tel, mp)
	}
}

// WithPropagators sets the propagator of the retrier's spans, by default the
// global one (otel.GetTextMapPropagator, read by [New]). The retrier
// publishes through the wrapped broker, which carries the trace context
// itself; this option exists so that every relay package takes the same
// three. A nil propagator is an error.
func WithPropagators(p propagation.TextMapPropagator) Option {
	return func(c *config) error {
		return option.Propagators(pkg, &c.tel, p)
	}
}
