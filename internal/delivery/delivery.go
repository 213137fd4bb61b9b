// Package delivery holds the delivery policy that every relay backend applies
// to a finished delivery: acknowledge it, redeliver it after a backoff, or write
// it to the dead-letter topic and only then acknowledge it. Backends supply the
// primitives ([Settler]); the decisions are written once, here.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/telemetry"
)

// Defaults shared by every backend: the root package's, so that relay's docs
// show their values and no backend can drift from them.
const (
	DefaultMaxDeliver = relay.DefaultMaxDeliver
	DefaultMinBackoff = relay.DefaultMinBackoff
	DefaultMaxBackoff = relay.DefaultMaxBackoff
)

// DefaultDeadLetterTopic is [relay.DefaultDeadLetterTopic]: topic + ".dead".
func DefaultDeadLetterTopic(topic string) string { return relay.DefaultDeadLetterTopic(topic) }

// Message is a message as it travels on the wire: what both faces of a backend
// read and write.
type Message struct {
	UUID     string
	Metadata map[string]string
	Payload  []byte
}

// Policy says how often a message is delivered and where it goes when every
// delivery failed.
type Policy struct {
	MaxDeliver      int // deliveries in all, including the first; at least 1
	MinBackoff      time.Duration
	MaxBackoff      time.Duration
	DeadLetterTopic func(topic string) string
	// MaxRetryAfter caps the wait a relay.RetryAfter error asks for; 0 makes
	// such errors wait the backoff only.
	MaxRetryAfter time.Duration
}

// DefaultPolicy returns the policy every backend starts from.
func DefaultPolicy() Policy {
	return Policy{
		MaxDeliver:      DefaultMaxDeliver,
		MinBackoff:      DefaultMinBackoff,
		MaxBackoff:      DefaultMaxBackoff,
		DeadLetterTopic: DefaultDeadLetterTopic,
		MaxRetryAfter:   relay.DefaultMaxRetryAfter,
	}
}

// Validate returns an error wrapping relay.ErrInvalidOption, prefixed with pkg,
// when a field is out of range. It does not change p.
func (p Policy) Validate(pkg string) error {
	switch {
	case p.MaxDeliver < 1:
		return fmt.Errorf("%s: %w: max deliver %d, must be at least 1", pkg, relay.ErrInvalidOption, p.MaxDeliver)
	case p.MinBackoff < relay.MinBackoffFloor:
		return fmt.Errorf("%s: %w: min backoff %v, must be at least %v", pkg, relay.ErrInvalidOption, p.MinBackoff, relay.MinBackoffFloor)
	case p.MaxBackoff < p.MinBackoff:
		return fmt.Errorf("%s: %w: max backoff %v is below min backoff %v", pkg, relay.ErrInvalidOption, p.MaxBackoff, p.MinBackoff)
	case p.MaxRetryAfter < 0 || p.MaxRetryAfter > relay.MaxRetryAfterLimit:
		return fmt.Errorf("%s: %w: max retry after %v, must be from 0 to %v", pkg, relay.ErrInvalidOption, p.MaxRetryAfter, relay.MaxRetryAfterLimit)
	case p.DeadLetterTopic == nil:
		return fmt.Errorf("%s: %w: nil dead-letter topic function", pkg, relay.ErrInvalidOption)
	}
	return nil
}

// Backoff returns the wait before delivery number attempt+1, after attempt
// failed deliveries: the step is MinBackoff·2^(attempt-1) capped at
// MaxBackoff, and the wait is drawn uniformly from [step, min(2·step,
// MaxBackoff)], so that it is never below MinBackoff nor above MaxBackoff and
// the redeliveries of a burst of failures spread out. An attempt below 1
// counts as 1. The arithmetic cannot overflow, whatever the attempt and the
// bounds. A policy that [Policy.Validate] refuses still gets a wait: a
// MinBackoff below 1ns counts as 1ns, and a MaxBackoff below MinBackoff makes
// the wait MinBackoff.
func (p Policy) Backoff(attempt int) time.Duration {
	lo, hi := max(p.MinBackoff, 1), p.MaxBackoff
	if hi < lo {
		return lo
	}
	step := lo
	for i := 1; i < attempt && step < hi; i++ {
		if step > hi-step { // doubling would pass hi (or overflow)
			step = hi
			break
		}
		step *= 2
	}
	top := hi
	if step <= hi-step {
		top = 2 * step
	}
	// step >= 1, so top-step+1 <= math.MaxInt64: no overflow.
	return step + rand.N(top-step+1)
}

// ErrStopped is the processing error of a delivery that was not processed
// because its consumer is stopping: it is left for redelivery without delay,
// whatever its attempt number, and never dead-lettered for it.
var ErrStopped = errors.New("consumer stopping")

// Action is what a backend does with a finished delivery.
type Action int

const (
	// Ack removes the message: the handler succeeded.
	Ack Action = iota
	// Retry leaves the message for redelivery after a delay.
	Retry
	// DeadLetter writes the message to the dead-letter topic, then removes it.
	DeadLetter
)

// Decide returns what to do after delivery number attempt (1-based) ended with
// err, and for Retry how long to wait: the backoff, or the wait of a
// relay.RetryAfter in err (capped at MaxRetryAfter) when that is longer.
func (p Policy) Decide(attempt int, err error) (Action, time.Duration) {
	switch {
	case err == nil:
		return Ack, 0
	case errors.Is(err, ErrStopped):
		return Retry, 0
	case errors.Is(err, relay.ErrPermanent), attempt >= p.MaxDeliver:
		return DeadLetter, 0
	default:
		return Retry, p.retryWait(attempt, err)
	}
}

// retryWait is max(backoff, the capped wait of err's relay.RetryAfter).
func (p Policy) retryWait(attempt int, err error) time.Duration {
	wait := p.Backoff(attempt)
	if d, ok := relay.RetryAfterDelay(err); ok {
		wait = max(wait, min(d, p.MaxRetryAfter))
	}
	return wait
}

// Skip returns the error to settle d with instead of processing it, or nil when
// d should be processed: an entry that could not be decoded goes to the
// dead-letter topic without reaching the handler. Every backend calls it
// before the handler, so the rule is the same everywhere.
//
// A delivery numbered above MaxDeliver (a consumer took the last attempt and
// died, or a stopping consumer handed the message back) is processed once more
// and dead-lettered if that fails: deliveries that a Close handed back count as
// attempts on the servers, so skipping them would dead-letter messages no
// handler ever saw.
func (p Policy) Skip(d *Delivery) error {
	if d.DecodeErr != nil {
		return fmt.Errorf("%w: decode: %w", relay.ErrPermanent, d.DecodeErr)
	}
	return nil
}

// CheckTopic returns an error wrapping relay.ErrInvalidTopic when the
// dead-letter topic of topic is not a valid topic (for example, a 255-byte
// topic plus ".dead" is too long). Subscribe calls it, so that a message is
// never left with nowhere to go.
func (p Policy) CheckTopic(topic string) error {
	dl := p.DeadLetterTopic(topic)
	if err := relay.ValidateTopic(dl); err != nil {
		return fmt.Errorf("dead-letter topic of %q (set it with WithDeadLetterTopic): %w", topic, err)
	}
	return nil
}

// Delivery is one delivery of a stored message to a consumer.
type Delivery struct {
	Topic   string // the source topic
	ID      string // the backend's id of the stored message
	Attempt int    // 1 for the first delivery
	Message Message
	// DecodeErr is set when the stored entry could not be decoded; the
	// delivery then goes straight to the dead-letter topic.
	DecodeErr error
	// Telemetry is the attempt's instrumentation, which the engine starts
	// (telemetry.Topic.Start) before processing and [Policy.Settle] ends
	// with the outcome. The zero value records nothing.
	Telemetry telemetry.Attempt
}

// Settler is what a backend implements so that [Policy.Settle] can finish a
// delivery. Each method may be called at most once per delivery, and only one
// of Ack and Retry, except that Ack follows a successful PublishDeadLetter.
type Settler interface {
	// Ack removes the delivery from the backend.
	Ack(ctx context.Context) error
	// Retry leaves the delivery pending, to be delivered again after delay.
	Retry(ctx context.Context, delay time.Duration) error
	// PublishDeadLetter durably stores msg on topic.
	PublishDeadLetter(ctx context.Context, topic string, msg Message) error
}

// Settle applies the policy to delivery d whose processing ended with err,
// and records the outcome on d.Telemetry (before acknowledging, so that a
// reader who sees the message gone sees its outcome counted).
// A dead letter is published and only after that acknowledged; when the
// publish fails the delivery is left for redelivery, so that it is never lost.
// The returned error is the backend's, for the logger.
func (p Policy) Settle(ctx context.Context, d *Delivery, err error, s Settler) error {
	if d.DecodeErr != nil {
		err = p.Skip(d)
	}
	action, delay := p.Decide(d.Attempt, err)
	switch action {
	case Ack:
		d.Telemetry.Settled(telemetry.Acked, nil, 0, "")
		return s.Ack(ctx)
	case Retry:
		outcome := telemetry.Retried
		if errors.Is(err, ErrStopped) {
			outcome = telemetry.HandedBack
		}
		d.Telemetry.Settled(outcome, err, delay, "")
		return s.Retry(ctx, delay)
	}
	dlTopic := p.DeadLetterTopic(d.Topic)
	if perr := s.PublishDeadLetter(ctx, dlTopic, DeadLetterMessage(d, err)); perr != nil {
		backoff := p.Backoff(d.Attempt)
		d.Telemetry.Settled(telemetry.Retried, err, backoff, "")
		rerr := s.Retry(ctx, backoff)
		return errors.Join(fmt.Errorf("publish dead letter to %q: %w", dlTopic, perr), rerr)
	}
	d.Telemetry.Settled(telemetry.DeadLettered, err, 0, dlTopic)
	return s.Ack(ctx)
}

// DeadLetterMessage returns the dead letter of d: the same UUID and payload,
// the source metadata, plus the keys of relay.MetadataSourceTopic and friends.
func DeadLetterMessage(d *Delivery, err error) Message {
	md := make(map[string]string, len(d.Message.Metadata)+4)
	for k, v := range d.Message.Metadata {
		md[k] = v
	}
	md[relay.MetadataSourceTopic] = d.Topic
	md[relay.MetadataSourceID] = d.ID
	md[relay.MetadataAttempts] = strconv.Itoa(d.Attempt)
	reason := "unknown error"
	if err != nil {
		reason = err.Error()
	}
	md[relay.MetadataReason] = reason
	return Message{UUID: d.Message.UUID, Metadata: md, Payload: d.Message.Payload}
}

// PanicError is the error a handler's panic is turned into, and the error that
// replaces a returned error whose Error method panics (a typed nil pointer).
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("handler panic: %v", e.Value) }

// ErrGoexit is the processing error of a handler that called
// runtime.Goexit (t.FailNow in a test handler does).
var ErrGoexit = errors.New("handler called runtime.Goexit")

// Call runs h on a copy of payload (a handler may change its slice without
// changing the dead letter) and returns its error. A panic becomes a
// *PanicError, and so does a returned error whose Error method panics (a typed
// nil pointer), so that formatting it later cannot crash the process. A
// handler that calls runtime.Goexit ends the calling goroutine: engines use
// [CallSettled], which settles the delivery even then.
func Call(h relay.Handler, payload []byte) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return checkError(h(append([]byte(nil), payload...)))
}

// CallSettled is [Call] that passes the outcome to settle exactly once, even
// when the handler calls runtime.Goexit: settle then gets [ErrGoexit], and the
// calling goroutine exits after it (Goexit cannot be stopped), so an engine
// with long-lived workers must start a replacement when a worker ends inside
// CallSettled.
func CallSettled(h relay.Handler, payload []byte, settle func(error)) {
	returned := false
	defer func() {
		if !returned {
			settle(ErrGoexit)
		}
	}()
	err := Call(h, payload)
	returned = true
	settle(err)
}

// checkError returns err, or a *PanicError when err.Error() panics.
func checkError(err error) (checked error) {
	if err == nil {
		return nil
	}
	defer func() {
		if v := recover(); v != nil {
			checked = &PanicError{Value: fmt.Sprintf("the %T returned by the handler panics in Error: %v", err, v), Stack: debug.Stack()}
		}
	}()
	_ = err.Error()
	return err
}
