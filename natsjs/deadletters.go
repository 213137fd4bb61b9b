package natsjs

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

// DeadLetters yields the dead letters on deadLetterTopic that f selects,
// oldest first, or newest first with f.Newest, up to f.Limit. It reads one
// message per request (the direct/MSG.GET API, next by subject), so it never
// holds more than one message oldest first, and at most 256 newest first,
// where it reads the stream backwards in windows of 256 sequences (a
// stretch of deleted messages costs one request per window). With f.IDs it
// reads only those sequences. Messages stored after the iteration began are
// not yielded. Each message is decoded as relay stores it (headers as
// metadata, [UUIDHeader] as the UUID); one that relay did not write is
// yielded with what it has (no reason, no source). An invalid topic yields
// an error wrapping [relay.ErrInvalidTopic], a topic without stream one
// wrapping [relay.ErrUnknownTopic], and a failed request the server's
// error; the error is yielded once and ends the sequence. Each request
// without a deadline of ctx is bounded by the request timeout.
func (in *Inspector) DeadLetters(ctx context.Context, deadLetterTopic string, f relay.DeadLetterFilter) iter.Seq2[relay.DeadLetter, error] {
	return func(yield func(relay.DeadLetter, error) bool) {
		if ctx == nil {
			yield(relay.DeadLetter{}, fmt.Errorf("natsjs: inspect dead letters %q: %w", deadLetterTopic, relay.ErrNilContext))
			return
		}
		if err := in.deadLetters(ctx, deadLetterTopic, f, yield); err != nil {
			yield(relay.DeadLetter{}, fmt.Errorf("natsjs: inspect dead letters %q: %w", deadLetterTopic, err))
		}
	}
}

// deadLetters yields what DeadLetters yields, and returns the error that
// ends it; nil when the caller stopped or all was yielded.
func (in *Inspector) deadLetters(ctx context.Context, topic string, f relay.DeadLetterFilter, yield func(relay.DeadLetter, error) bool) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return err
	}
	var stream jetstream.Stream
	var st state
	err := in.call(ctx, func(ctx context.Context) (err error) {
		if stream, err = in.stream(ctx, topic); err == nil {
			st, err = subjectState(ctx, stream, topic)
		}
		return err
	})
	if err != nil || st.msgs == 0 {
		return err
	}
	yielded := 0
	emit := func(m *jetstream.RawStreamMsg) bool { // false: stop
		dm, _ := decode(m.Header, m.Data) // a header with several values: keep what was read
		dl := delivery.ReadDeadLetter(topic, seqID(m.Sequence), m.Time, dm)
		if !f.Match(dl, time.Now()) {
			return true
		}
		yielded++
		return yield(dl, nil) && (f.Limit <= 0 || yielded < f.Limit)
	}
	// next returns the first message of topic from seq on, nil past last.
	next := func(seq uint64) (*jetstream.RawStreamMsg, error) {
		var m *jetstream.RawStreamMsg
		err := in.call(ctx, func(ctx context.Context) (err error) {
			m, err = stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(topic))
			return err
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) || err == nil && m.Sequence > st.lastSeq {
			return nil, nil
		}
		return m, err
	}
	switch {
	case len(f.IDs) > 0:
		return in.deadLettersByID(ctx, stream, topic, f, emit)
	case !f.Newest:
		for seq := st.firstSeq; ; {
			m, err := next(seq)
			if err != nil || m == nil {
				return err
			}
			if !emit(m) {
				return nil
			}
			seq = m.Sequence + 1
		}
	}
	for hi := st.lastSeq; hi >= st.firstSeq; {
		lo := st.firstSeq
		if hi-st.firstSeq >= deadLetterWindow {
			lo = hi - deadLetterWindow + 1
		}
		var page []*jetstream.RawStreamMsg
		for seq := lo; seq <= hi; {
			m, err := next(seq)
			if err != nil {
				return err
			}
			if m == nil || m.Sequence > hi {
				break
			}
			page = append(page, m)
			seq = m.Sequence + 1
		}
		for _, m := range slices.Backward(page) {
			if !emit(m) {
				return nil
			}
		}
		if lo == st.firstSeq {
			return nil
		}
		hi = lo - 1
	}
	return nil
}

// deadLettersByID yields the dead letters of f.IDs, in the order f asks;
// an id that is not a stored sequence of topic is skipped.
func (in *Inspector) deadLettersByID(ctx context.Context, stream jetstream.Stream, topic string, f relay.DeadLetterFilter, emit func(*jetstream.RawStreamMsg) bool) error {
	seqs := make([]uint64, 0, len(f.IDs))
	for _, id := range f.IDs {
		if seq, err := strconv.ParseUint(id, 10, 64); err == nil && seq > 0 {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	if f.Newest {
		slices.Reverse(seqs)
	}
	for _, seq := range seqs {
		m, err := in.stored(ctx, stream, seq)
		if err != nil {
			return err
		}
		if m == nil || m.Subject != topic {
			continue
		}
		if !emit(m) {
			return nil
		}
	}
	return nil
}

// stored returns the message of stream at seq, nil when there is none.
func (in *Inspector) stored(ctx context.Context, stream jetstream.Stream, seq uint64) (*jetstream.RawStreamMsg, error) {
	var m *jetstream.RawStreamMsg
	err := in.call(ctx, func(ctx context.Context) (err error) {
		m, err = stream.GetMsg(ctx, seq)
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get message %d: %w", seq, err)
	}
	return m, nil
}

// call runs op with ctx, bounded by the request timeout if ctx has no
// deadline.
func (in *Inspector) call(ctx context.Context, op func(ctx context.Context) error) error {
	ctx, cancel := in.e.bound(ctx)
	defer cancel()
	return op(ctx)
}

// Redrive publishes dl again on to, or on dl.SourceTopic when to is empty,
// as a new message (delivery.Redriven: a new UUID, which is also its
// Nats-Msg-Id, so that the stream's duplicate window does not drop it; dl's
// payload and metadata without relay's dead-letter keys; and
// [relay.MetadataRedrivenFrom]), then deletes dl from its stream
// (STREAM.MSG.DELETE of its sequence). It first checks that dl is still
// stored (same topic, same stored time) and moves nothing otherwise: an
// error wrapping [relay.ErrDeadLetterGone] (and jetstream.ErrMsgNotFound).
// The check is not atomic with the publish: two redrives of one dead letter
// at the same moment may both pass it and publish the message twice (a
// duplicate, never a loss). The publish creates the
// destination's stream as the broker would ([WithStreamConfig]), is retried
// through transient failures within ctx (or the request timeout when ctx
// has no deadline), and counts only once JetStream acknowledged it (a
// duplicate answer counts only when the stream shows the message); the
// dead letter is deleted only then, so a crash in between leaves a message
// twice, never none. Once the publish is acknowledged, the deletion runs
// even when ctx ends meanwhile (bounded by 5 s of its own), so that a
// redrive stopped by its caller does not leave the dead letter to be
// redriven again. It returns an error wrapping [relay.ErrInvalidTopic]
// before anything moves when the destination is not a valid topic,
// [relay.ErrPayloadTooLarge] or [relay.ErrInvalidMetadata] when the
// message would not leave room for its own dead letter (as Publish), or
// the server's error.
func (in *Inspector) Redrive(ctx context.Context, dl relay.DeadLetter, to string) error {
	if ctx == nil {
		return fmt.Errorf("natsjs: inspect redrive %q: %w", dl.Topic, relay.ErrNilContext)
	}
	ctx, cancel := in.e.bound(ctx)
	defer cancel()
	if err := in.redrive(ctx, dl, to); err != nil {
		return fmt.Errorf("natsjs: inspect redrive %q %s: %w", dl.Topic, dl.ID, err)
	}
	return nil
}

func (in *Inspector) redrive(ctx context.Context, dl relay.DeadLetter, to string) error {
	to, err := delivery.RedriveTopic(dl, to)
	if err != nil {
		return err
	}
	stream, seq, err := in.deadLetter(ctx, dl)
	if err != nil {
		return err
	}
	if m, err := in.stored(ctx, stream, seq); err != nil {
		return err
	} else if !same(m, dl) {
		return fmt.Errorf("%w: %w", relay.ErrDeadLetterGone, jetstream.ErrMsgNotFound)
	}
	m := delivery.Redriven(dl, watermill.NewUUID())
	nm, err := encode(to, m)
	if err != nil {
		return err
	}
	limit := in.e.js.Conn().MaxPayload()
	hdr := headerSize(nm.Header)
	if err := checkSize(nm, hdr, limit, reserve(limit, to)); err != nil {
		return err
	}
	if err := checkHeaders(hdr, deadLetterHeaders(to)+minDeadLetterReason); err != nil {
		return err
	}
	err = in.e.retry(ctx, to, func(ctx context.Context) error {
		ack, err := in.e.publishOne(ctx, to, nm)
		if err != nil || !ack.Duplicate {
			return err
		}
		// An earlier attempt stored it and its acknowledgement was lost, or
		// the id is taken: only the stream can tell.
		stored, err := in.e.confirmStored(ctx, ack, m.UUID)
		if err == nil && !stored {
			err = fmt.Errorf("publish to %q answered as a duplicate of a message not stored", to)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("publish to %q: %w", to, err)
	}
	// The message is durable: the dead letter goes even if ctx ends now
	// (an operator's Ctrl-C during a bulk redrive), or a rerun would
	// publish it twice. The deletion is bounded on its own.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), attemptTimeout)
	defer cancel()
	return in.remove(rctx, stream, seq, dl)
}

// Purge deletes dl from its stream (STREAM.MSG.DELETE of its sequence). A
// dead letter already gone, or whose sequence now holds another message (a
// stream deleted and created again), is not an error and nothing is
// deleted. It returns the server's error, or an error wrapping
// [relay.ErrUnknownTopic] when dl's topic has no stream.
func (in *Inspector) Purge(ctx context.Context, dl relay.DeadLetter) error {
	if ctx == nil {
		return fmt.Errorf("natsjs: inspect purge %q: %w", dl.Topic, relay.ErrNilContext)
	}
	ctx, cancel := in.e.bound(ctx)
	defer cancel()
	stream, seq, err := in.deadLetter(ctx, dl)
	if err == nil {
		err = in.remove(ctx, stream, seq, dl)
	}
	if err != nil {
		return fmt.Errorf("natsjs: inspect purge %q %s: %w", dl.Topic, dl.ID, err)
	}
	return nil
}

// deadLetter returns the stream and sequence of dl.
func (in *Inspector) deadLetter(ctx context.Context, dl relay.DeadLetter) (jetstream.Stream, uint64, error) {
	seq, err := strconv.ParseUint(dl.ID, 10, 64)
	if err != nil || seq == 0 {
		return nil, 0, fmt.Errorf("id %q is not a stream sequence", dl.ID)
	}
	if err := relay.ValidateTopic(dl.Topic); err != nil {
		return nil, 0, err
	}
	stream, err := in.stream(ctx, dl.Topic)
	if err != nil {
		return nil, 0, err
	}
	return stream, seq, nil
}

// remove deletes the message at seq of stream if it is still dl.
func (in *Inspector) remove(ctx context.Context, stream jetstream.Stream, seq uint64, dl relay.DeadLetter) error {
	m, err := in.stored(ctx, stream, seq)
	if err != nil || !same(m, dl) {
		return err
	}
	err = stream.DeleteMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		// The server says why only in text: ask whether it is gone.
		if m, gerr := in.stored(ctx, stream, seq); gerr == nil && m == nil {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("delete message %d: %w", seq, err)
	}
	return nil
}

// same reports whether m, a stored message, is the dead letter dl: on its
// topic and, when dl knows it, stored at the same time.
func same(m *jetstream.RawStreamMsg, dl relay.DeadLetter) bool {
	return m != nil && m.Subject == dl.Topic && (dl.Time.IsZero() || m.Time.Equal(dl.Time))
}

// DeleteConsumer deletes the durable consumer of group on topic when it has
// nothing pending (num_ack_pending 0 in its consumer info); with it goes the
// group's position in the stream. On JetStream a group is one durable, so
// consumer must name that durable: the Name of the group's one
// [relay.ConsumerInfo]. group is the durable's name as [Inspector.Topic]
// reports it, or the relay group it was made for ([ConsumerName](group)).
// It returns an error wrapping [relay.ErrUnknownTopic] when topic has no
// stream, [relay.ErrUnknownConsumer] when the stream has no such durable
// reading topic, or consumer is not its name, [relay.ErrConsumerPending]
// when it has pending messages (nothing is deleted), or the server's error.
// A message delivered between the check and the deletion is delivered
// again to the group's next consumer, which starts from the stream's start
// (deliver policy "all"), like a new group.
func (in *Inspector) DeleteConsumer(ctx context.Context, topic, group, consumer string) error {
	if ctx == nil {
		return fmt.Errorf("natsjs: inspect delete consumer %q: %w", topic, relay.ErrNilContext)
	}
	ctx, cancel := in.e.bound(ctx)
	defer cancel()
	if err := in.deleteConsumer(ctx, topic, group, consumer); err != nil {
		return fmt.Errorf("natsjs: inspect delete consumer %q of group %q on %q: %w", consumer, group, topic, err)
	}
	return nil
}

func (in *Inspector) deleteConsumer(ctx context.Context, topic, group, consumer string) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return err
	}
	stream, err := in.stream(ctx, topic)
	if err != nil {
		return err
	}
	var ci *jetstream.ConsumerInfo
	for _, name := range []string{group, ConsumerName(group)} {
		if name == "" {
			continue
		}
		c, err := stream.Consumer(ctx, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrInvalidConsumerName) {
			continue
		}
		if err != nil {
			return fmt.Errorf("consumer info %q: %w", name, err)
		}
		if info := c.CachedInfo(); isGroup(info, stream.CachedInfo().Config.Subjects, topic) {
			ci = info
			break
		}
	}
	switch {
	case ci == nil:
		return fmt.Errorf("%w: stream %q has no durable consumer of that group reading the topic", relay.ErrUnknownConsumer, stream.CachedInfo().Config.Name)
	case consumer != ci.Name:
		return fmt.Errorf("%w: the group's one consumer is the durable %q", relay.ErrUnknownConsumer, ci.Name)
	case ci.NumAckPending > 0:
		return fmt.Errorf("%w: %d delivered and not acknowledged", relay.ErrConsumerPending, ci.NumAckPending)
	}
	err = stream.DeleteConsumer(ctx, ci.Name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("%w: deleted meanwhile", relay.ErrUnknownConsumer)
	}
	return err
}
