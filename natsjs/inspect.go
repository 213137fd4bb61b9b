package natsjs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
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
