package relay

import (
	"context"
	"errors"
	"time"
)

// Limits of delayed delivery and retry-after, the same in every backend
// (WithMaxDelay, WithMaxRetryAfter).
const (
	// DefaultMaxDelay is the longest wait between a publish and its due time
	// that [DelayedPublisher.PublishAt] and the Watermill metadata
	// [MetadataDelayedUntil] accept when WithMaxDelay is not given: 30 days.
	DefaultMaxDelay = 30 * 24 * time.Hour
	// MaxDelayLimit is the largest value WithMaxDelay accepts, in every
	// backend: 10 years, far from the overflow of time.Time arithmetic.
	MaxDelayLimit = 10 * 365 * 24 * time.Hour
	// DefaultMaxRetryAfter caps the wait that [RetryAfter] asks for when
	// WithMaxRetryAfter is not given: 1 hour. A longer request waits 1 hour.
	DefaultMaxRetryAfter = time.Hour
	// MaxRetryAfterLimit is the largest value WithMaxRetryAfter accepts, in
	// every backend: 30 days.
	MaxRetryAfterLimit = 30 * 24 * time.Hour
)

// MetadataDelayedUntil is the Watermill metadata key of a message's due time:
// Watermill's own delay.DelayedUntilKey ("_watermill_delayed_until", from
// github.com/ThreeDotsLabs/watermill/components/delay v1.5.1), so that
// delay.Message and delay.NewPublisher work on relay's publishers unchanged.
// Its value is an RFC 3339 time, with or without fractions of a second
// ("2026-01-02T15:04:05Z", "2026-01-02T15:04:05.25+01:00"). Every relay
// Watermill Publisher delivers a message carrying it to no group before that
// time; a value it cannot parse, or a time further than the backend's
// WithMaxDelay ahead, makes Publish return an error wrapping
// [ErrInvalidDelay], and none of the messages of that call is stored. The
// key stays in the delivered message's metadata.
const MetadataDelayedUntil = "_watermill_delayed_until"

// MetadataRetryAfter is set on a consumed Watermill message by [NackReason]
// when the handler's error was made by [RetryAfter]: the wait it asks for, in
// the form of time.Duration.String ("1.5s").
const MetadataRetryAfter = "relay_retry_after"

// ErrInvalidDelay is returned by [DelayedPublisher.PublishAt] and by the
// Watermill Publishers, before anything is stored, when a due time is further
// ahead than the backend's maximum (WithMaxDelay, [DefaultMaxDelay] by
// default), is the zero time, or when a [MetadataDelayedUntil] value is not an
// RFC 3339 time.
var ErrInvalidDelay = errors.New("relay: invalid delay")

// DelayedPublisher is the optional capability of a broker that stores a
// message now and delivers it later. Every relay backend's Broker implements
// it; pubsubtest checks a third-party backend that does, and skips the
// delayed-delivery checks, saying so, for one that does not. A program holding
// a [Broker] asks with a type assertion.
//
// PublishAt stores payload on topic to be delivered, to every consumer group,
// no earlier than at (and, on an idle system, soon after: each backend
// documents its lateness). It returns nil only once the message is durable,
// as [Broker.Publish] does: the delayed message then survives a restart of the
// server and of any relay process. A time at or before now is delivered at
// once, as by Publish. A time further ahead than the backend's maximum
// (WithMaxDelay, [DefaultMaxDelay] by default) or the zero time returns an
// error wrapping [ErrInvalidDelay] and stores nothing. It returns the errors
// of Publish otherwise ([ErrInvalidTopic], [ErrPayloadTooLarge],
// [ErrNilContext], [ErrClosed], ctx's error), and a backend that cannot delay
// on the server it talks to says so with an error of its own. It is safe for
// concurrent use.
type DelayedPublisher interface {
	PublishAt(ctx context.Context, topic string, payload []byte, at time.Time) error
}

// RetryAfter wraps err so that the failed delivery is redelivered no sooner
// than d: the wait is the larger of the backoff and d, d being capped by the
// backend's WithMaxRetryAfter ([DefaultMaxRetryAfter] by default). The
// delivery still counts as an attempt: max deliver and dead letters apply as
// for any error, and an err wrapping [ErrPermanent] still goes to the
// dead-letter topic at once. The result matches err with [errors.Is] and
// [errors.As]; it is nil when err is nil, and a d of zero or less adds
// nothing to the backoff. On the Watermill face, return it from a handler
// behind [NackReason].
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, d: d}
}

// RetryAfterDelay returns the wait that the first [RetryAfter] in err's chain
// asks for, and whether there is one. Backends call it; the cap is theirs to
// apply.
func RetryAfterDelay(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.d, true
	}
	return 0, false
}

type retryAfterError struct {
	err error
	d   time.Duration
}

// Error implements error: the text of the wrapped error.
func (r *retryAfterError) Error() string { return r.err.Error() }

// Unwrap serves the errors package.
func (r *retryAfterError) Unwrap() error { return r.err }
