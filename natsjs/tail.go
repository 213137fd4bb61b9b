package natsjs

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
)

var _ relay.Tailer = (*Inspector)(nil)

// tailPoll is how often [Inspector.Tail] looks for a new message when no
// wake-up came: a message that reached the stream without passing the
// connection's subject interest (sourced, mirrored, or published while the
// connection was away) still shows within this time.
const tailPoll = time.Second

// Tail yields the messages stored on topic after the call, in stream order,
// until ctx is done (the sequence then ends without an error) or the caller
// stops. It creates no consumer: it reads the stream by sequence (the
// direct/MSG.GET API, next by subject, from the stream's last sequence at
// the call plus one), so no group loses or is lent a message, and nothing is
// left on the server. A plain NATS subscription on the topic's subject, on
// the caller's connection, wakes it when a message is published, and is
// removed when Tail returns; without a wake-up it looks again every second.
// Messages are decoded as [Inspector.DeadLetters] decodes them.
//
// An invalid topic yields an error wrapping [relay.ErrInvalidTopic], a topic
// without stream one wrapping [relay.ErrUnknownTopic], and a failure of the
// first request the server's error. Later transient failures (a server
// restart, a disconnection) are waited out and the tail resumes where it
// was; any other error is yielded once and ends the sequence. Each request
// without a deadline of ctx is bounded by the request timeout.
func (in *Inspector) Tail(ctx context.Context, topic string) iter.Seq2[relay.StoredMessage, error] {
	return func(yield func(relay.StoredMessage, error) bool) {
		if ctx == nil {
			yield(relay.StoredMessage{}, fmt.Errorf("natsjs: inspect tail %q: %w", topic, relay.ErrNilContext))
			return
		}
		if err := in.tail(ctx, topic, yield); err != nil {
			yield(relay.StoredMessage{}, fmt.Errorf("natsjs: inspect tail %q: %w", topic, err))
		}
	}
}

// tail yields what Tail yields and returns the error that ends it; nil when
// ctx is done or the caller stopped.
func (in *Inspector) tail(ctx context.Context, topic string, yield func(relay.StoredMessage, error) bool) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return err
	}
	// Subscribed before the last sequence is read: a message stored after
	// the call wakes the loop even if it came before the first read.
	wake := make(chan struct{}, 1)
	sub, err := in.e.js.Conn().Subscribe(topic, func(*nats.Msg) {
		select {
		case wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe to subject: %w", err)
	}
	defer func() {
		if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			in.e.log.Warn("natsjs: tail's subscription not removed", slog.String("topic", topic), slog.Any("error", err))
		}
	}()
	var stream jetstream.Stream
	err = in.call(ctx, func(ctx context.Context) (err error) {
		stream, err = in.stream(ctx, topic)
		return err
	})
	if err != nil {
		return err
	}
	seq := stream.CachedInfo().State.LastSeq + 1
	timer := time.NewTimer(tailPoll)
	defer timer.Stop()
	for {
		var m *jetstream.RawStreamMsg
		err := in.call(ctx, func(ctx context.Context) (err error) {
			m, err = stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(topic))
			return err
		})
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			dm, _ := decode(m.Header, m.Data) // a header with several values: keep what was read
			if !yield(relay.StoredMessage{
				Topic: topic, ID: seqID(m.Sequence), Time: m.Time,
				UUID: dm.UUID, Payload: dm.Payload, Metadata: dm.Metadata,
			}, nil) {
				return nil
			}
			seq = m.Sequence + 1
			continue
		case errors.Is(err, jetstream.ErrMsgNotFound): // nothing new yet
		case transient(err) || errors.Is(err, context.DeadlineExceeded):
			in.e.log.Warn("natsjs: tail's read failed; trying again", slog.String("topic", topic), slog.Any("error", err))
		default:
			return fmt.Errorf("get message from sequence %d: %w", seq, err)
		}
		timer.Reset(tailPoll)
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-timer.C:
		}
	}
}
