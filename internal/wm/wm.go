// Package wm adapts relay's backend engines to Watermill's message.Subscriber
// channel-and-ack protocol and converts between Watermill messages and
// delivery.Message. Every backend's Watermill face uses it, so the protocol is
// written once.
package wm

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

// ErrNacked is the processing error of a delivery whose Watermill message was
// nacked.
var ErrNacked = errors.New("message nacked")

// FromWatermill returns the wire form of msg. Metadata is copied, and nil when
// msg has none (no map is made for it); the payload is shared, so the caller
// must encode it before msg may change.
func FromWatermill(msg *message.Message) delivery.Message {
	var md map[string]string
	if len(msg.Metadata) > 0 {
		md = maps.Clone(map[string]string(msg.Metadata))
	}
	return delivery.Message{UUID: msg.UUID, Metadata: md, Payload: msg.Payload}
}

// ToWatermill returns a Watermill message carrying m's UUID, metadata and a copy
// of its payload.
func ToWatermill(m delivery.Message) *message.Message {
	msg := message.NewMessage(m.UUID, append([]byte(nil), m.Payload...))
	for k, v := range m.Metadata {
		msg.Metadata.Set(k, v)
	}
	return msg
}

// nackMetadata returns the values of the keys that relay.NackReason sets.
func nackMetadata(msg *message.Message) [3]string {
	return [3]string{msg.Metadata.Get(relay.MetadataReason), msg.Metadata.Get(relay.MetadataPermanent), msg.Metadata.Get(relay.MetadataRetryAfter)}
}

// nackError is the processing error of a nacked message: [ErrNacked], with the
// handler's reason and permanence when relay.NackReason recorded them. Values
// the message already carried when it was delivered (a redriven dead letter
// keeps its old reason) are not taken for new ones. A wait recorded under
// relay.MetadataRetryAfter makes the error a relay.RetryAfter.
func nackError(msg *message.Message, before [3]string) error {
	err := nackCause(msg, before)
	after := nackMetadata(msg)
	if after[2] != before[2] && after[2] != "" {
		if d, perr := time.ParseDuration(after[2]); perr == nil {
			return relay.RetryAfter(err, d)
		}
	}
	return err
}

func nackCause(msg *message.Message, before [3]string) error {
	after := nackMetadata(msg)
	reason := ""
	if after[0] != before[0] {
		reason = after[0]
	}
	permanent := after[1] != before[1] && after[1] == "true"
	if reason == "" && !permanent {
		return ErrNacked
	}
	if reason == "" {
		reason = ErrNacked.Error()
	}
	return &nacked{reason: reason, permanent: permanent}
}

type nacked struct {
	reason    string
	permanent bool
}

func (n *nacked) Error() string { return n.reason }

func (n *nacked) Unwrap() []error {
	if n.permanent {
		return []error{ErrNacked, relay.ErrPermanent}
	}
	return []error{ErrNacked}
}

// Process is the function a backend engine calls for each delivery. ctx is the
// engine's: it is done when the engine stops. A nil error acknowledges the
// delivery; [delivery.ErrStopped] means it was not processed. An engine
// passes the same ctx to every call of one subscription (a new one only when
// it starts the subscription anew), so that what is derived from it is
// derived once, not once per message.
type Process func(ctx context.Context, d *delivery.Delivery) error

// Start is a backend's half of one Watermill Subscribe call: it starts
// consuming topic, calling process for each delivery, and returns stop, which
// stops fetching and returns once no call of process is running.
type Start func(process Process) (stop func(), err error)

// Subscribe runs Watermill's side of one Subscribe call over a backend
// subscription. Messages are sent on the returned channel one at a time per
// worker; each delivery's outcome is the message's Ack (nil) or Nack
// ([ErrNacked]). When ctx is done or closing is closed, the subscription stops,
// each message not yet acked counts as not processed ([delivery.ErrStopped]),
// and the channel is closed after the last send. wg tracks the goroutine that
// does that, so the subscriber's Close can wait for it.
func Subscribe(ctx context.Context, closing <-chan struct{}, wg *sync.WaitGroup, start Start) (<-chan *message.Message, error) {
	subCtx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-closing:
			cancel()
		case <-subCtx.Done():
		}
	}()
	out := make(chan *message.Message)
	var l linked
	stop, err := start(func(engineCtx context.Context, d *delivery.Delivery) error {
		return deliver(l.to(subCtx, engineCtx), out, d)
	})
	if err != nil {
		cancel()
		return nil, err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-subCtx.Done()
		stop()
		close(out)
	}()
	return out, nil
}

// linked is the context of one subscription's messages: done when the
// subscription (subCtx) or the engine is, made once per engine context
// rather than once per message, which cost a context and an AfterFunc on
// every Watermill message.
type linked struct {
	cur atomic.Pointer[link]
}

type link struct {
	engine context.Context
	ctx    context.Context
}

// to returns the context done with subCtx or engineCtx. Concurrent first
// calls may each make one; every one made is correct.
func (l *linked) to(subCtx, engineCtx context.Context) context.Context {
	if c := l.cur.Load(); c != nil && c.engine == engineCtx {
		return c.ctx
	}
	ctx, cancel := context.WithCancel(subCtx)
	context.AfterFunc(engineCtx, cancel)
	l.cur.Store(&link{engine: engineCtx, ctx: ctx})
	return ctx
}

// deliver sends d on out as a Watermill message and waits for its Ack or Nack.
// parent is done when the subscription or the engine stops.
func deliver(parent context.Context, out chan<- *message.Message, d *delivery.Delivery) error {
	msgCtx, cancel := context.WithCancel(parent)
	defer cancel() // Watermill's contract: the message's context ends once it is settled.
	// Only parent ends msgCtx before deliver returns: waiting on parent
	// spares msgCtx a channel that only a handler asking for it needs.
	stopped := parent.Done()

	msg := ToWatermill(d.Message)
	// The handler's spans are children of the attempt's process span.
	msg.SetContext(d.Telemetry.Context(msgCtx))
	before := nackMetadata(msg)
	select {
	case out <- msg:
	case <-stopped:
		return delivery.ErrStopped
	}
	select {
	case <-msg.Acked():
		return nil
	case <-msg.Nacked():
		return nackError(msg, before)
	case <-stopped:
		// Ack and Nack may race the stop; an Ack that made it counts.
		select {
		case <-msg.Acked():
			return nil
		default:
			return delivery.ErrStopped
		}
	}
}
