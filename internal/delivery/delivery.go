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
)

// Defaults shared by every backend; the backends export them under their own
// names and link to them from their option docs.
const (
	DefaultMaxDeliver = 3
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
)

// DefaultDeadLetterTopic is the dead-letter topic of topic: topic + ".dead".
func DefaultDeadLetterTopic(topic string) string { return topic + ".dead" }

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
}

// DefaultPolicy returns the policy every backend starts from.
func DefaultPolicy() Policy {
	return Policy{
		MaxDeliver:      DefaultMaxDeliver,
		MinBackoff:      DefaultMinBackoff,
		MaxBackoff:      DefaultMaxBackoff,
		DeadLetterTopic: DefaultDeadLetterTopic,
	}
}

// Validate returns an error wrapping relay.ErrInvalidOption, prefixed with pkg,
// when a field is out of range. It does not change p.
func (p Policy) Validate(pkg string) error {
	switch {
	case p.MaxDeliver < 1:
		return fmt.Errorf("%s: %w: max deliver %d, must be at least 1", pkg, relay.ErrInvalidOption, p.MaxDeliver)
	case p.MinBackoff <= 0:
		return fmt.Errorf("%s: %w: min backoff %v, must be positive", pkg, relay.ErrInvalidOption, p.MinBackoff)
	case p.MaxBackoff < p.MinBackoff:
		return fmt.Errorf("%s: %w: max backoff %v is below min backoff %v", pkg, relay.ErrInvalidOption, p.MaxBackoff, p.MinBackoff)
	case p.DeadLetterTopic == nil:
		return fmt.Errorf("%s: %w: nil dead-letter topic function", pkg, relay.ErrInvalidOption)
	}
	return nil
}

// Backoff returns the wait before delivery number attempt+1, after attempt
// failed deliveries (attempt >= 1): MinBackoff doubled per failed attempt, capped
// at MaxBackoff, of which the upper half is random ("equal jitter"), so that the
// wait is never below half the exponential step and redeliveries of a burst of
// failures spread out.
func (p Policy) Backoff(attempt int) time.Duration {
	d := p.MinBackoff
	for i := 1; i < attempt && d < p.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.MaxBackoff)
	half := d / 2
	return half + rand.N(d-half+1)
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
// err, and for Retry how long to wait.
func (p Policy) Decide(attempt int, err error) (Action, time.Duration) {
	switch {
	case err == nil:
		return Ack, 0
	case errors.Is(err, ErrStopped):
		return Retry, 0
	case errors.Is(err, relay.ErrPermanent), errors.Is(err, ErrUnsettled), attempt >= p.MaxDeliver:
		return DeadLetter, 0
	default:
		return Retry, p.Backoff(attempt)
	}
}

// ErrUnsettled is the processing error of a delivery whose number exceeds
// MaxDeliver: an earlier consumer took the last attempt and never settled it
// (it died or lost its connection mid-handler). The message may be what kills
// consumers, so it is dead-lettered without calling the handler again, and a
// poison message cannot crash-loop a service. See [Policy.Skip].
var ErrUnsettled = errors.New("an earlier delivery past max deliver was never settled (its consumer died?)")

// Skip returns the error to settle d with instead of processing it, or nil when
// d should be processed: a decode error, or [ErrUnsettled] wrapped with the
// counts when d.Attempt exceeds MaxDeliver. Every backend calls it before the
// handler, so the rule is the same everywhere.
func (p Policy) Skip(d *Delivery) error {
	switch {
	case d.DecodeErr != nil:
		return fmt.Errorf("%w: decode: %w", relay.ErrPermanent, d.DecodeErr)
	case d.Attempt > p.MaxDeliver:
		return fmt.Errorf("delivery %d, max deliver %d: %w", d.Attempt, p.MaxDeliver, ErrUnsettled)
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

// Settle applies the policy to delivery d whose processing ended with err.
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
		return s.Ack(ctx)
	case Retry:
		return s.Retry(ctx, delay)
	}
	dlTopic := p.DeadLetterTopic(d.Topic)
	if perr := s.PublishDeadLetter(ctx, dlTopic, DeadLetterMessage(d, err)); perr != nil {
		rerr := s.Retry(ctx, p.Backoff(d.Attempt))
		return errors.Join(fmt.Errorf("publish dead letter to %q: %w", dlTopic, perr), rerr)
	}
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

// PanicError is the error a handler's panic is turned into.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("handler panic: %v", e.Value) }

// Call runs h(payload) and turns a panic into a *PanicError.
func Call(h relay.Handler, payload []byte) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return h(payload)
}
