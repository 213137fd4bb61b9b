// Package option holds the validated setters behind the options that every
// relay backend shares (WithGroup, WithMaxDeliver, WithBackoff,
// WithDeadLetterTopic, WithConcurrency, WithPrefetch, WithLogger), so that
// each rule and its error text is written once. Every setter leaves its
// destination untouched and returns an error wrapping relay.ErrInvalidOption,
// prefixed with the backend's package name pkg, when the value is out of range.
package option

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
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

// Concurrency sets *dst to n, which must be at least 1.
func Concurrency(pkg string, dst *int, n int) error {
	if n < 1 {
		return Invalid(pkg, "concurrency %d, must be at least 1", n)
	}
	*dst = n
	return nil
}

// Prefetch sets *dst to n, which must not be negative.
func Prefetch(pkg string, dst *int, n int) error {
	if n < 0 {
		return Invalid(pkg, "prefetch %d, must not be negative", n)
	}
	*dst = n
	return nil
}

// MaxDeliver sets p.MaxDeliver to n, which must be at least 1.
func MaxDeliver(pkg string, p *delivery.Policy, n int) error {
	if n < 1 {
		return Invalid(pkg, "max deliver %d, must be at least 1", n)
	}
	p.MaxDeliver = n
	return nil
}

// Backoff sets p.MinBackoff and p.MaxBackoff to min and max: min must be
// positive and max at least min. The error texts are those of
// delivery.Policy.Validate.
func Backoff(pkg string, p *delivery.Policy, min, max time.Duration) error {
	switch {
	case min <= 0:
		return Invalid(pkg, "min backoff %v, must be positive", min)
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
