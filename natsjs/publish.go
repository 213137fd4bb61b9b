package natsjs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/telemetry"
)

// publish stores msgs on topic and returns once every one is acknowledged by
// the stream, or failed. ctxs[i] bounds msgs[i]; a context without a deadline
// is bounded by the request timeout. Messages are sent without waiting for
// each other's acknowledgement; one that fails for a transient reason, or
// whose acknowledgement does not come within attemptTimeout, is sent again
// (its Nats-Msg-Id makes that safe) until its context is done. A message too
// large for the server fails them all, before anything is sent.
//
// The common case, an acknowledgement within the attempt, costs one timer for
// the whole call and no context.
func (e *engine) publish(ctxs []context.Context, topic string, msgs []delivery.Message) error {
	return e.publishWith(ctxs, topic, msgs, nil)
}

// publishWith is publish that lets prepare change each encoded message
// (publishAt makes some of them schedules) before its size is checked.
func (e *engine) publishWith(ctxs []context.Context, topic string, msgs []delivery.Message, prepare func(i int, nm *nats.Msg)) error {
	if err := ctxs[0].Err(); err != nil {
		return err
	}
	start := time.Now()
	limit := e.js.Conn().MaxPayload()
	type sent struct {
		nm     *nats.Msg
		future jetstream.PubAckFuture
		err    error
		span   telemetry.Publish
	}
	// The common call, one message, keeps its batch on the stack.
	var one [1]sent
	batch := one[:]
	if len(msgs) > 1 {
		batch = make([]sent, len(msgs))
	}
	for i, m := range msgs {
		// One producer span per message, even in a Watermill batch, so that
		// each message's trace continues from its own context.
		batch[i].span, m.Metadata = e.tel.StartPublish(ctxs[i], topic, m.UUID, m.Metadata)
		nm, err := encode(topic, m)
		if err == nil && prepare != nil {
			prepare(i, nm)
		}
		hdr := 0
		if err == nil {
			hdr = headerSize(nm.Header)
			err = checkSize(nm, hdr, limit, reserve(limit, topic))
		}
		if err == nil {
			err = checkHeaders(hdr, deadLetterHeaders(topic)+minDeadLetterReason)
		}
		if err != nil {
			err = e.nameFailure(i, msgs, err)
			for j := range batch[:i+1] {
				batch[j].span.End(err)
			}
			return err
		}
		batch[i].nm = nm
	}
	// The stream is set up only for messages that may be sent: a refused
	// message (bad metadata, too large) creates nothing on the server.
	if _, ok := e.streams.Load(topic); !ok {
		ctx, cancel := e.bound(ctxs[0])
		err := e.retry(ctx, topic, func(ctx context.Context) error {
			_, err := e.ensureStream(ctx, topic)
			return err
		})
		cancel()
		if err != nil {
			for j := range batch {
				batch[j].span.End(err)
			}
			return err
		}
	}
	wait := attemptTimeout
	for i := range batch {
		if _, ok := ctxs[i].Deadline(); !ok {
			wait = min(wait, e.cfg.requestTimeout)
		}
		if batch[i].err = ctxs[i].Err(); batch[i].err == nil {
			batch[i].future, batch[i].err = e.js.PublishMsgAsync(batch[i].nm)
		}
	}
	// One timer for the whole batch: its messages were sent together.
	timer := startTimer(wait)
	defer stopTimer(timer)
	expired := false
	var errs []error
	for i, b := range batch {
		err := b.err
		if err == nil {
			_, expired, err = await(ctxs[i], b.future, timer.C, expired)
		}
		if err != nil && (errors.Is(err, errAttemptLost) || transient(err)) {
			ctx, cancel := ctxs[i], context.CancelFunc(func() {})
			if _, ok := ctx.Deadline(); !ok {
				ctx, cancel = context.WithDeadline(ctx, start.Add(e.cfg.requestTimeout))
			}
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
			} else {
				err = e.retry(ctx, topic, func(ctx context.Context) error {
					_, err := e.publishOne(ctx, topic, b.nm)
					return err
				})
			}
			cancel()
		}
		b.span.End(err)
		if err != nil {
			errs = append(errs, e.nameFailure(i, msgs, err))
		}
	}
	return errors.Join(errs...)
}

// attemptTimers holds stopped timers for publishWith to reuse: a new timer
// for every call cost three allocations and, with 16 publishers, about as
// many instructions as encoding the message. Since Go 1.23 a stopped timer's
// channel holds no stale tick, so a reused timer starts clean.
var attemptTimers sync.Pool

// startTimer returns a timer that fires once after d.
func startTimer(d time.Duration) *time.Timer {
	if t, ok := attemptTimers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

// stopTimer stops t and keeps it for startTimer.
func stopTimer(t *time.Timer) {
	t.Stop()
	attemptTimers.Put(t)
}

// errAttemptLost is await's error when the attempt timed out before ctx.
var errAttemptLost = errors.New("no acknowledgement within the attempt timeout")

// publishOne sends nm and waits for its acknowledgement.
func (e *engine) publishOne(ctx context.Context, topic string, nm *nats.Msg) (*jetstream.PubAck, error) {
	if _, err := e.ensureStream(ctx, topic); err != nil {
		return nil, err
	}
	f, err := e.js.PublishMsgAsync(nm)
	if err != nil {
		return nil, err
	}
	ack, _, err := await(ctx, f, nil, false)
	return ack, err
}

// await waits for the acknowledgement of f, ctx, or a tick of lost
// (errAttemptLost). expired says that lost ticked already; await returns
// whether it has by now.
func await(ctx context.Context, f jetstream.PubAckFuture, lost <-chan time.Time, expired bool) (*jetstream.PubAck, bool, error) {
	if expired {
		// The attempt is over: take what has come, wait for nothing more.
		select {
		case ack := <-f.Ok():
			return ack, true, nil
		case err := <-f.Err():
			return nil, true, ackError(err)
		default:
			if err := ctx.Err(); err != nil {
				return nil, true, err
			}
			return nil, true, errAttemptLost
		}
	}
	select {
	case ack := <-f.Ok():
		return ack, false, nil
	case err := <-f.Err():
		return nil, false, ackError(err)
	case <-ctx.Done():
		return nil, false, ctx.Err()
	case <-lost:
		return nil, true, errAttemptLost
	}
}

func ackError(err error) error {
	if isAPIError(err, codeMessageTooLarge) {
		return fmt.Errorf("%w: %w", relay.ErrPayloadTooLarge, err)
	}
	return err
}

func (e *engine) nameFailure(i int, msgs []delivery.Message, err error) error {
	if len(msgs) == 1 {
		return err
	}
	return fmt.Errorf("message %d of %d (uuid %q): %w", i+1, len(msgs), msgs[i].UUID, err)
}

// checkSize refuses a message that the server would refuse, or whose dead
// letter would not fit: payload and headers above limit (the connection's
// max_payload) less reserve. Before the first connection the limit is
// unknown (0) and the server decides.
func checkSize(nm *nats.Msg, hdr int, limit, reserve int64) error {
	if limit <= 0 {
		return nil
	}
	if int64(len(nm.Data)+hdr) > limit-reserve {
		if reserve > 0 {
			return fmt.Errorf("%w: payload of %d bytes with %d bytes of headers exceeds the server's max_payload of %d bytes less %d bytes kept for dead-letter metadata",
				relay.ErrPayloadTooLarge, len(nm.Data), hdr, limit, reserve)
		}
		return fmt.Errorf("%w: payload of %d bytes with %d bytes of headers exceeds the server's max_payload of %d bytes",
			relay.ErrPayloadTooLarge, len(nm.Data), hdr, limit)
	}
	return nil
}

// checkHeaders refuses a message whose headers, with room more bytes, would
// exceed what JetStream stores (maxHeaderBytes). hdr is their size
// (headerSize).
func checkHeaders(hdr, room int) error {
	if hdr+room > maxHeaderBytes {
		if room > 0 {
			return fmt.Errorf("%w: %d bytes of headers (metadata and UUID) exceed JetStream's limit of %d bytes less %d bytes kept for dead-letter metadata",
				relay.ErrInvalidMetadata, hdr, maxHeaderBytes, room)
		}
		return fmt.Errorf("%w: %d bytes of headers exceed JetStream's limit of %d bytes", relay.ErrInvalidMetadata, hdr, maxHeaderBytes)
	}
	return nil
}

// reserve is the room a message published on topic leaves, within limit,
// for the metadata of its dead letter: [DeadLetterReserve], or half of limit
// on a server whose max_payload is below 1536 bytes, but never less than the
// dead letter needs (deadLetterHeaders and minDeadLetterReason), so that
// every accepted message can be dead-lettered.
func reserve(limit int64, topic string) int64 {
	return max(min(DeadLetterReserve, limit/2), int64(deadLetterHeaders(topic)+minDeadLetterReason))
}
