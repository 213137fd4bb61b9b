package natsjs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

var _ relay.Inspector = (*Inspector)(nil)

// ErrForeignStream is returned (wrapped, together with
// [relay.ErrUnknownTopic]) by the [Inspector] for a topic whose stream name,
// [StreamName](topic), belongs to a stream that does not capture the topic's
// subject, and that no other stream captures either: a stream another tool
// made under that name. relay's broker would add the topic's subject to it
// on its first publish; until then the topic holds nothing.
var ErrForeignStream = errors.New("natsjs: the stream of the topic's name does not capture its subject")

// deadLetterWindow is the number of stream sequences that
// [Inspector.DeadLetters] reads per page when it yields newest first: it
// holds at most that many dead letters at a time.
const deadLetterWindow = 256

// Inspector is the [relay.Inspector] of the JetStream backend: it reads
// streams and consumers with the JetStream API of the caller's
// jetstream.JetStream, and never takes a message from a consumer. Each
// figure is the server's own (nats-server v2.15.2):
//
//   - [TopicInfo] Messages, FirstID/FirstTime and LastID/LastTime are the
//     stream info's state (messages, first_seq/first_ts, last_seq/last_ts)
//     of the topic's stream; the ids are stream sequences in decimal. When
//     the stream holds other subjects too (a stream relay adopted, see
//     [WithStreamConfig]), the count is the stream info's per-subject count
//     (subjects_filter) and the first and last messages are read by the
//     direct/MSG.GET API (next and last by subject).
//   - A consumer group is a durable consumer of the stream whose filter
//     subject is the topic (or that has no filter, on a stream of that one
//     subject); [relay.GroupInfo] Group and its one [relay.ConsumerInfo] Name
//     are the durable's name ([ConsumerName] of the relay group). From its
//     consumer info: Pending is num_ack_pending, Lag is num_pending
//     (LagKnown is always true), Redeliveries is num_redelivered (pending
//     messages delivered more than once). OldestPending is the age, by the
//     server's clock (the consumer info's ts), of the first message of the
//     topic after the consumer's ack floor (ack_floor.stream_seq + 1, read
//     by MSG.GET next by subject): the ack floor is the last sequence below
//     which every message is acknowledged, so that message is the oldest
//     pending one; the age counts from when it was stored, not from its
//     first delivery. ConsumerInfo Idle is 0 while a pull request waits on
//     the consumer (num_waiting above 0: a subscription is reading now),
//     otherwise the time since the later of delivered.last_active and
//     ack_floor.last_active (since the consumer's creation when neither is
//     set).
//   - TopicInfo DeadLetters counts the messages of the topic's dead-letter
//     topic ([WithDeadLetterTopic], topic + ".dead" by default), found the
//     same way; 0 when it has no stream.
//
// Reads are single requests, not retried: an operator's tool should see a
// failure at once. Each request without a deadline of its own is bounded by
// the request timeout ([WithRequestTimeout]). The publish of
// [Inspector.Redrive] is retried like the broker's (transient failures,
// within the same bound).
//
// An Inspector is safe for concurrent use. It holds nothing to close; the
// jetstream.JetStream and its connection stay the caller's.
type Inspector struct {
	e *engine
}

// NewInspector returns an Inspector over js, which stays the caller's: the
// Inspector never closes its connection. It takes the options of
// [NewBroker]; those that change what it reads or writes apply:
// [WithDeadLetterTopic] (the dead-letter topic counted in
// [relay.TopicInfo]), [WithStreamConfig] (the stream that
// [Inspector.Redrive] creates for a topic that has none),
// [WithRequestTimeout] and [WithLogger] (Warn records of [Inspector.Topics]).
// The others (group, max deliver, ack wait, backoff, concurrency, prefetch,
// consumer config) concern consuming: they are validated like the broker's
// and otherwise ignored. It returns an error wrapping
// [relay.ErrInvalidOption] when js is nil or an option is invalid. It does
// not contact the server.
func NewInspector(js jetstream.JetStream, opts ...Option) (*Inspector, error) {
	e, err := newEngine(js, opts)
	if err != nil {
		return nil, err
	}
	return &Inspector{e: e}, nil
}

// Topics returns the topics held by streams of relay's naming, sorted,
// dead-letter topics included: every subject of a stream that is a valid
// topic ([relay.ValidateTopic]) and whose [StreamName] is the stream's name.
// A stream with no such subject (another tool's) is skipped with a Warn
// record. A topic that relay keeps in a stream of another name (one that
// captured its subject before relay came, see the package documentation)
// is not listed; [Inspector.Topic] still finds it. It reads the stream list
// (STREAM.LIST) in pages.
func (in *Inspector) Topics(ctx context.Context) ([]string, error) {
	if ctx == nil {
		return nil, fmt.Errorf("natsjs: inspect topics: %w", relay.ErrNilContext)
	}
	ctx, cancel := in.e.bound(ctx)
	defer cancel()
	lister := in.e.js.ListStreams(ctx)
	var topics []string
	for info := range lister.Info() { // drained to the end: the lister's goroutine ends with it
		found := false
		for _, subject := range info.Config.Subjects {
			if relay.ValidateTopic(subject) == nil && StreamName(subject) == info.Config.Name {
				topics = append(topics, subject)
				found = true
			}
		}
		if !found {
			in.e.log.Warn("natsjs: stream skipped: none of its subjects is a topic of relay's naming",
				slog.String("stream", info.Config.Name), slog.Any("subjects", info.Config.Subjects))
		}
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("natsjs: inspect topics: %w", err)
	}
	slices.Sort(topics)
	return slices.Compact(topics), nil
}

// Topic returns what topic's stream holds and the topic's consumer groups,
// read as the [Inspector] documentation says. It returns an error wrapping
// [relay.ErrInvalidTopic] for an invalid topic, [relay.ErrUnknownTopic]
// when no stream captures the topic (with [ErrForeignStream] too when a
// stream of its name exists but captures other subjects), or the server's
// error.
func (in *Inspector) Topic(ctx context.Context, topic string) (relay.TopicInfo, error) {
	if ctx == nil {
		return relay.TopicInfo{}, fmt.Errorf("natsjs: inspect topic %q: %w", topic, relay.ErrNilContext)
	}
	ctx, cancel := in.e.bound(ctx)
	defer cancel()
	ti, err := in.topic(ctx, topic)
	if err != nil {
		return relay.TopicInfo{}, fmt.Errorf("natsjs: inspect topic %q: %w", topic, err)
	}
	return ti, nil
}

func (in *Inspector) topic(ctx context.Context, topic string) (relay.TopicInfo, error) {
	if err := relay.ValidateTopic(topic); err != nil {
		return relay.TopicInfo{}, err
	}
	stream, err := in.stream(ctx, topic)
	if err != nil {
		return relay.TopicInfo{}, err
	}
	st, err := subjectState(ctx, stream, topic)
	if err != nil {
		return relay.TopicInfo{}, err
	}
	ti := relay.TopicInfo{
		Topic:     topic,
		Store:     stream.CachedInfo().Config.Name,
		Messages:  st.msgs,
		FirstTime: st.firstTime,
		LastTime:  st.lastTime,
	}
	if st.msgs > 0 {
		ti.FirstID, ti.LastID = seqID(st.firstSeq), seqID(st.lastSeq)
	}
	if ti.Groups, err = in.groups(ctx, stream, topic); err != nil {
		return relay.TopicInfo{}, err
	}
	dlt := in.e.cfg.policy.DeadLetterTopic(topic)
	if relay.ValidateTopic(dlt) == nil {
		dls, err := in.stream(ctx, dlt)
		switch {
		case errors.Is(err, relay.ErrUnknownTopic):
		case err != nil:
			return relay.TopicInfo{}, fmt.Errorf("dead-letter topic %q: %w", dlt, err)
		default:
			dst, err := subjectState(ctx, dls, dlt)
			if err != nil {
				return relay.TopicInfo{}, fmt.Errorf("dead-letter topic %q: %w", dlt, err)
			}
			ti.DeadLetters = dst.msgs
		}
	}
	return ti, nil
}

// stream returns the stream that holds topic, found as the broker finds it
// (see ensureStream): the stream of its name if it captures the topic,
// otherwise the stream that captures the topic's subject.
func (in *Inspector) stream(ctx context.Context, topic string) (jetstream.Stream, error) {
	named, err := in.e.js.Stream(ctx, StreamName(topic))
	switch {
	case err == nil:
		if captures(named.CachedInfo().Config.Subjects, topic) {
			return named, nil
		}
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("stream info %q: %w", StreamName(topic), err)
	}
	name, err := in.e.js.StreamNameBySubject(ctx, topic)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && named != nil:
		return nil, fmt.Errorf("%w: %w: stream %q has subjects %q", relay.ErrUnknownTopic, ErrForeignStream,
			named.CachedInfo().Config.Name, named.CachedInfo().Config.Subjects)
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("%w: no stream captures its subject", relay.ErrUnknownTopic)
	case err != nil:
		return nil, fmt.Errorf("stream by subject: %w", err)
	}
	s, err := in.e.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) { // deleted in between
		return nil, fmt.Errorf("%w: stream %q is gone", relay.ErrUnknownTopic, name)
	}
	if err != nil {
		return nil, fmt.Errorf("stream info %q: %w", name, err)
	}
	return s, nil
}

func captures(subjects []string, topic string) bool {
	return slices.ContainsFunc(subjects, func(s string) bool { return subjectMatches(s, topic) })
}

// only reports whether subjects capture nothing but topic.
func only(subjects []string, topic string) bool {
	return len(subjects) == 1 && subjects[0] == topic
}

type state struct {
	msgs                uint64
	firstSeq, lastSeq   uint64
	firstTime, lastTime time.Time
}

// subjectState returns what stream holds of topic: the stream's state when
// topic is its one subject, otherwise the per-subject count and the first
// and last messages of the subject.
func subjectState(ctx context.Context, stream jetstream.Stream, topic string) (state, error) {
	info := stream.CachedInfo()
	if only(info.Config.Subjects, topic) {
		s := info.State
		return state{s.Msgs, s.FirstSeq, s.LastSeq, s.FirstTime, s.LastTime}, nil
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(topic))
	if err != nil {
		return state{}, fmt.Errorf("stream info %q: %w", stream.CachedInfo().Config.Name, err)
	}
	st := state{msgs: info.State.Subjects[topic]}
	if st.msgs == 0 {
		return st, nil
	}
	first, err := stream.GetMsg(ctx, info.State.FirstSeq, jetstream.WithGetMsgSubject(topic))
	if err != nil {
		return state{}, fmt.Errorf("get first message of %q: %w", topic, err)
	}
	last, err := stream.GetLastMsgForSubject(ctx, topic)
	if err != nil {
		return state{}, fmt.Errorf("get last message of %q: %w", topic, err)
	}
	st.firstSeq, st.firstTime = first.Sequence, first.Time
	st.lastSeq, st.lastTime = last.Sequence, last.Time
	return st, nil
}

// groups returns the consumer groups of topic on stream, by name.
func (in *Inspector) groups(ctx context.Context, stream jetstream.Stream, topic string) ([]relay.GroupInfo, error) {
	subjects := stream.CachedInfo().Config.Subjects
	lister := stream.ListConsumers(ctx)
	var infos []*jetstream.ConsumerInfo
	for ci := range lister.Info() { // drained to the end, like Topics
		if isGroup(ci, subjects, topic) {
			infos = append(infos, ci)
		}
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("list consumers of stream %q: %w", stream.CachedInfo().Config.Name, err)
	}
	groups := make([]relay.GroupInfo, 0, len(infos))
	for _, ci := range infos {
		g, err := groupInfo(ctx, stream, topic, ci)
		if err != nil {
			return nil, err
		}
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b relay.GroupInfo) int { return cmp.Compare(a.Group, b.Group) })
	return groups, nil
}

// isGroup reports whether ci is a consumer group of topic: a durable that
// reads the topic alone.
func isGroup(ci *jetstream.ConsumerInfo, subjects []string, topic string) bool {
	c := ci.Config
	if c.Durable == "" {
		return false
	}
	switch {
	case c.FilterSubject != "":
		return c.FilterSubject == topic
	case len(c.FilterSubjects) > 0:
		return only(c.FilterSubjects, topic)
	}
	return only(subjects, topic)
}

func groupInfo(ctx context.Context, stream jetstream.Stream, topic string, ci *jetstream.ConsumerInfo) (relay.GroupInfo, error) {
	now := ci.TimeStamp
	if now.IsZero() {
		now = time.Now()
	}
	g := relay.GroupInfo{
		Group:        ci.Name,
		Pending:      uint64(max(ci.NumAckPending, 0)),
		Lag:          ci.NumPending,
		LagKnown:     true,
		Redeliveries: uint64(max(ci.NumRedelivered, 0)),
	}
	if g.Pending > 0 {
		m, err := stream.GetMsg(ctx, ci.AckFloor.Stream+1, jetstream.WithGetMsgSubject(topic))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound): // acknowledged or removed since the consumer info
		case err != nil:
			return relay.GroupInfo{}, fmt.Errorf("consumer %q: get oldest pending message: %w", ci.Name, err)
		default:
			g.OldestPending = max(now.Sub(m.Time), 0)
		}
	}
	idle := time.Duration(0)
	if ci.NumWaiting == 0 {
		last := ci.Created
		for _, t := range []*time.Time{ci.Delivered.Last, ci.AckFloor.Last} {
			if t != nil && t.After(last) {
				last = *t
			}
		}
		idle = max(now.Sub(last), 0)
	}
	g.Consumers = []relay.ConsumerInfo{{Name: ci.Name, Pending: g.Pending, Idle: idle}}
	return g, nil
}

func seqID(seq uint64) string { return strconv.FormatUint(seq, 10) }

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
// error wrapping jetstream.ErrMsgNotFound. The publish creates the
// destination's stream as the broker would ([WithStreamConfig]), is retried
// through transient failures within ctx (or the request timeout when ctx
// has no deadline), and counts only once JetStream acknowledged it (a
// duplicate answer counts only when the stream shows the message); the
// dead letter is deleted only then, so a crash in between leaves a message
// twice, never none. It returns an error wrapping [relay.ErrInvalidTopic]
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
		return fmt.Errorf("dead letter no longer stored: %w", jetstream.ErrMsgNotFound)
	}
	m := delivery.Redriven(dl, watermill.NewUUID())
	nm, err := encode(to, m)
	if err != nil {
		return err
	}
	limit := in.e.js.Conn().MaxPayload()
	if err := in.e.checkSize(nm, limit, reserve(limit, to)); err != nil {
		return err
	}
	if err := checkHeaders(nm, deadLetterHeaders(to)+minDeadLetterReason); err != nil {
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
	return in.remove(ctx, stream, seq, dl)
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
