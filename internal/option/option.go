// Package option holds the validated setters behind the options that every
// relay backend shares (WithGroup, WithMaxDeliver, WithBackoff,
// WithDeadLetterTopic, WithConcurrency, WithPrefetch, WithLogger,
// WithTracerProvider, WithMeterProvider, WithPropagators) and the
// range checks of the backends' own options, so that
// each rule and its error text is written once. Every setter leaves its
// destination untouched and returns an error wrapping relay.ErrInvalidOption,
// prefixed with the backend's package name pkg, when the value is out of range.
package option

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/telemetry"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Invalid returns an error wrapping relay.ErrInvalidOption, of text
// "pkg: relay: invalid option: <format with args>", the text every backend
// gives.
func Invalid(pkg, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", pkg, relay.ErrInvalidOption, fmt.Sprintf(format, args...))
}

// Group sets *dst to group, which must not be empty.
func Group(pkg string, dst *string, group string) error {
	if group == "" {
		return Invalid(pkg, "empty group")
	}
	*dst = group
	return nil
}

// Apply applies opts to c in order, and returns the first error: a nil
// option is refused, since a caller who wrote one meant something by it.
func Apply[C any, O ~func(*C) error](pkg string, c *C, opts []O) error {
	for i, opt := range opts {
		if opt == nil {
			return Invalid(pkg, "nil option (number %d)", i+1)
		}
		if err := opt(c); err != nil {
			return err
		}
	}
	return nil
}

// Concurrency sets *dst to n, which must be at least 1 and at most
// relay.MaxConcurrency.
func Concurrency(pkg string, dst *int, n int) error {
	if n < 1 || n > relay.MaxConcurrency {
		return Invalid(pkg, "concurrency %d, must be from 1 to %d", n, relay.MaxConcurrency)
	}
	*dst = n
	return nil
}

// Prefetch sets *dst to n, which must be at least 0 and at most
// relay.MaxPrefetch.
func Prefetch(pkg string, dst *int, n int) error {
	if n < 0 || n > relay.MaxPrefetch {
		return Invalid(pkg, "prefetch %d, must be from 0 to %d", n, relay.MaxPrefetch)
	}
	*dst = n
	return nil
}

// Duration sets *dst to d, which must be from lo to hi; what names the option
// in the error ("ack wait").
func Duration(pkg, what string, dst *time.Duration, d, lo, hi time.Duration) error {
	if d < lo || d > hi {
		return Invalid(pkg, "%s %v, must be from %v to %v", what, d, lo, hi)
	}
	*dst = d
	return nil
}

// StreamID sets *dst to id, which must be a start id that Redis' XGROUP
// CREATE accepts: "$", or an entry id "<ms>" or "<ms>-<seq>" of decimal
// unsigned 64-bit numbers ("0", "0-0", "1700000000000-3").
func StreamID(pkg string, dst *string, id string) error {
	if !validStreamID(id) {
		return Invalid(pkg, "start id %q, want \"$\", \"<ms>\" or \"<ms>-<seq>\"", id)
	}
	*dst = id
	return nil
}

func validStreamID(id string) bool {
	if id == "$" {
		return true
	}
	ms, seq, hasSeq := strings.Cut(id, "-")
	return isUint64(ms) && (!hasSeq || isUint64(seq))
}

// isUint64 reports whether s is the decimal form of a uint64, without sign
// or spaces.
func isUint64(s string) bool {
	if s == "" || s[0] == '+' {
		return false
	}
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

// MaxDeliver sets p.MaxDeliver to n, which must be at least 1. It has no
// upper bound: the count is only compared, never used in arithmetic.
func MaxDeliver(pkg string, p *delivery.Policy, n int) error {
	if n < 1 {
		return Invalid(pkg, "max deliver %d, must be at least 1", n)
	}
	p.MaxDeliver = n
	return nil
}

// Backoff sets p.MinBackoff and p.MaxBackoff to min and max: min must be at
// least relay.MinBackoffFloor and max at least min; max has no upper bound,
// since delivery.Policy.Backoff cannot overflow. The error texts are those of
// delivery.Policy.Validate.
func Backoff(pkg string, p *delivery.Policy, min, max time.Duration) error {
	switch {
	case min < relay.MinBackoffFloor:
		return Invalid(pkg, "min backoff %v, must be at least %v", min, relay.MinBackoffFloor)
	case max < min:
		return Invalid(pkg, "max backoff %v is below min backoff %v", max, min)
	}
	p.MinBackoff, p.MaxBackoff = min, max
	return nil
}

// DeadLetterTopic sets p.DeadLetterTopic to f, which must not be nil.
func DeadLetterTopic(pkg string, p *delivery.Policy, f func(topic string) string) error {
	if f == nil {
		return Invalid(pkg, "nil dead-letter topic function")
	}
	p.DeadLetterTopic = f
	return nil
}

// Logger sets *dst to l, which must not be nil.
func Logger(pkg string, dst **slog.Logger, l *slog.Logger) error {
	if l == nil {
		return Invalid(pkg, "nil logger")
	}
	*dst = l
	return nil
}

// TracerProvider sets c.TracerProvider to tp, which must not be nil.
func TracerProvider(pkg string, c *telemetry.Config, tp trace.TracerProvider) error {
	if tp == nil {
		return Invalid(pkg, "nil tracer provider")
	}
	c.TracerProvider = tp
	return nil
}

// MeterProvider sets c.MeterProvider to mp, which must not be nil.
func MeterProvider(pkg string, c *telemetry.Config, mp metric.MeterProvider) error {
	if mp == nil {
		return Invalid(pkg, "nil meter provider")
	}
	c.MeterProvider = mp
	return nil
}

// Propagators sets c.Propagators to p, which must not be nil.
func Propagators(pkg string, c *telemetry.Config, p propagation.TextMapPropagator) error {
	if p == nil {
		return Invalid(pkg, "nil propagators")
	}
	c.Propagators = p
	return nil
}

// MaxDelay sets *dst to d, which must be from 1ms to relay.MaxDelayLimit.
func MaxDelay(pkg string, dst *time.Duration, d time.Duration) error {
	return Duration(pkg, "max delay", dst, d, time.Millisecond, relay.MaxDelayLimit)
}

// MaxRetryAfter sets p.MaxRetryAfter to d, which must be from 0 (relay.RetryAfter
// adds nothing to the backoff) to relay.MaxRetryAfterLimit.
func MaxRetryAfter(pkg string, p *delivery.Policy, d time.Duration) error {
	return Duration(pkg, "max retry after", &p.MaxRetryAfter, d, 0, relay.MaxRetryAfterLimit)
}
