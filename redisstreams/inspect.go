package redisstreams

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

var (
	_ relay.Inspector = (*Inspector)(nil)
	_ relay.Tailer    = (*Inspector)(nil)
)

// ErrForeignKey is returned by [Inspector.Topic], [Inspector.DeadLetters],
// [Inspector.Purge] and [Inspector.DeleteConsumer] when the key of a topic
// holds something relay did not write: a key of another type than a stream
// (a string, a hash, …), or, for Topic, a stream none of whose first and last
// entries has relay's payload field. Such errors wrap [relay.ErrUnknownTopic]
// too, since the key holds no relay topic: a tool written against
// [relay.Inspector] alone reports an unknown topic.
var ErrForeignKey = errors.New("redisstreams: key is not a relay stream")

// Bounds of the Inspector's work per call.
const (
	// MaxRedeliveryScan is the largest number of pending entries per
	// consumer group that [Inspector.Topic] reads (XPENDING, extended form,
	// in pages of 1,000) to count the redeliveries: in a group with more
	// pending entries, GroupInfo.Redeliveries counts those among the oldest
	// MaxRedeliveryScan only, and is a lower bound.
	MaxRedeliveryScan = 10_000
	// deadLetterPage is the number of entries one XRANGE or XREVRANGE of
	// [Inspector.DeadLetters] reads.
	deadLetterPage = 100
	// scanCount is the COUNT hint of one SCAN of [Inspector.Topics].
	scanCount = 1000
	// redeliveryPage is the number of entries one XPENDING of the
	// redelivery count reads.
	redeliveryPage = 1000
	// foreignKeysLogged is how many skipped keys Topics names in its
	// warning.
	foreignKeysLogged = 10
)

// Inspector is the [relay.Inspector] of the Redis Streams backend: it reads
// what the streams of relay's topics hold, with Redis' own commands (each
// method says which), and redrives or purges dead letters. It never reads a
// stream with XREADGROUP, so it takes no entry from a consumer group, and it
// starts no goroutine. Its methods are safe for concurrent use. It needs
// Redis 7.0 or later (the lag and entries-read of XINFO GROUPS); what it says
// of the commands' answers is as Redis 7.0.15 documents them.
//
// The caller owns the client: the Inspector never closes it, and has no
// Close of its own.
type Inspector struct {
	client redis.UniversalClient
	cfg    config
}

// NewInspector returns an Inspector over client, which may be a single,
// cluster, sentinel-backed or ring client. It takes the Options of
// [NewBroker]; of them, [WithDeadLetterTopic] names the dead-letter topic
// whose depth [Inspector.Topic] reports, [WithMaxLen] trims the streams that
// [Inspector.Redrive] publishes to as Publish would, and [WithLogger] receives
// the warnings of [Inspector.Topics]; every other option is checked and
// ignored (the Inspector reports every consumer group, whatever [WithGroup]
// says). It returns an error wrapping [relay.ErrInvalidOption] when client is
// nil or an option is invalid. It sends nothing to Redis.
func NewInspector(client redis.UniversalClient, opts ...Option) (*Inspector, error) {
	if client == nil {
		return nil, fmt.Errorf("%s: %w: nil redis client", pkg, relay.ErrInvalidOption)
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Inspector{client: client, cfg: cfg}, nil
}

// Topics returns the topics that have a stream, sorted, dead-letter topics
// included: the keys that SCAN finds (on every master of a cluster client,
// every shard of a ring) whose name is a valid topic ([relay.ValidateTopic]),
// whose TYPE is stream, and whose first or last entry (XRANGE, XREVRANGE
// COUNT 1) has relay's payload field, or that are empty. Keys of a valid
// topic's name that are not streams, or streams that relay did not write,
// are left out, and one warning per call names how many there were and the
// first few. It returns the Redis error, wrapped, when a command fails.
func (in *Inspector) Topics(ctx context.Context) ([]string, error) {
	var (
		mu      sync.Mutex
		topics  []string
		skipped []string
		nSkip   int
	)
	scan := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, "*", scanCount).Result()
			if err != nil {
				return err
			}
			ok, foreign, err := classify(ctx, c, keys)
			if err != nil {
				return err
			}
			mu.Lock()
			topics = append(topics, ok...)
			nSkip += len(foreign)
			skipped = append(skipped, foreign[:min(len(foreign), max(0, foreignKeysLogged-len(skipped)))]...)
			mu.Unlock()
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	c := boundedClient(ctx, in.client)
	var err error
	switch c := c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return scan(ctx, n) })
	case *redis.Ring:
		err = c.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { return scan(ctx, n) })
	default:
		err = scan(ctx, c)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: inspect topics: %w", pkg, err)
	}
	if nSkip > 0 {
		slices.Sort(skipped)
		in.cfg.logger.Warn("redisstreams: keys named like topics that are not relay streams (another type, or a stream without relay's fields) left out",
			"backend", pkg, "keys", nSkip, "first", skipped)
	}
	slices.Sort(topics)
	return slices.Compact(topics), nil
}

// classify sorts the keys of one SCAN page into relay's streams and the
// foreign keys of a topic's name, with one pipeline: TYPE, and the first and
// last entry of each.
func classify(ctx context.Context, c redis.Cmdable, keys []string) (streams, foreign []string, err error) {
	keys = slices.DeleteFunc(keys, func(k string) bool { return relay.ValidateTopic(k) != nil })
	if len(keys) == 0 {
		return nil, nil, nil
	}
	types := make([]*redis.StatusCmd, len(keys))
	firsts := make([]*redis.XMessageSliceCmd, len(keys))
	lasts := make([]*redis.XMessageSliceCmd, len(keys))
	_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			types[i] = p.Type(ctx, k)
			firsts[i] = p.XRangeN(ctx, k, "-", "+", 1)
			lasts[i] = p.XRevRangeN(ctx, k, "+", "-", 1)
		}
		return nil
	})
	var rerr redis.Error
	if err != nil && !errors.As(err, &rerr) { // WRONGTYPE of the XRANGEs of other keys is expected
		return nil, nil, err
	}
	for i, k := range keys {
		switch t, err := types[i].Result(); {
		case err != nil:
			return nil, nil, err
		case t == "none": // deleted since SCAN saw it
		case t != "stream":
			foreign = append(foreign, k)
		case relayEntries(firsts[i].Val(), lasts[i].Val()):
			streams = append(streams, k)
		default:
			foreign = append(foreign, k)
		}
	}
	return streams, foreign, nil
}

// relayEntries reports whether a stream whose first and last entries are
// given (each a slice of at most one) looks written by relay: empty (a
// stream that Subscribe created with its group), or with relay's payload
// field in one of them.
func relayEntries(first, last []redis.XMessage) bool {
	if len(first) == 0 && len(last) == 0 {
		return true
	}
	for _, x := range slices.Concat(first, last) {
		if _, ok := x.Values[fieldPayload]; ok {
			return true
		}
	}
	return false
}

// Topic returns what topic's stream holds, from Redis' own commands:
//
//   - Messages, FirstID, LastID: XINFO STREAM's length, first-entry and
//     last-entry; FirstTime and LastTime are the milliseconds of those ids
//     (the time of the XADD, for ids that Redis generated);
//   - per group, from XINFO GROUPS: Pending is the group's pel-count, Lag its
//     lag; LagKnown is false when Redis answers a nil lag (entries deleted or
//     trimmed in the group's range, see XINFO GROUPS);
//   - per group, from XINFO CONSUMERS: each consumer's name, pending and idle
//     (milliseconds since its last read or claim);
//   - OldestPending: the age of the oldest pending entry, the server's TIME
//     less the milliseconds of the lowest id of the XPENDING summary: how
//     long ago it was stored;
//   - Redeliveries: the entries of the XPENDING extended form whose delivery
//     count is over 1, among at most [MaxRedeliveryScan] of them;
//   - DeadLetters: XLEN of the dead-letter topic ([WithDeadLetterTopic]), 0
//     when it has no stream (a dead-letter key of another type is logged and
//     counted 0).
//
// The commands are sent in three pipelines, not one transaction: figures
// taken while consumers work may be a few entries apart. It returns an error
// wrapping [relay.ErrUnknownTopic] when the key does not exist, one wrapping
// [ErrForeignKey] (and ErrUnknownTopic) when it is not a stream relay wrote,
// [relay.ErrInvalidTopic] for an invalid topic, or the Redis error.
func (in *Inspector) Topic(ctx context.Context, topic string) (relay.TopicInfo, error) {
	info, err := in.topic(ctx, topic)
	if err != nil {
		return relay.TopicInfo{}, fmt.Errorf("%s: inspect topic %q: %w", pkg, topic, err)
	}
	return info, nil
}

func (in *Inspector) topic(ctx context.Context, topic string) (relay.TopicInfo, error) {
	if err := relay.ValidateTopic(topic); err != nil {
		return relay.TopicInfo{}, err
	}
	key, dlKey := streamKey(topic), streamKey(in.cfg.policy.DeadLetterTopic(topic))
	c := boundedClient(ctx, in.client)
	if err := checkStream(ctx, c, key); err != nil {
		return relay.TopicInfo{}, err
	}
	var (
		stream *redis.XInfoStreamCmd
		groups *redis.XInfoGroupsCmd
		now    *redis.TimeCmd
		dl     *redis.IntCmd
	)
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		stream, groups, now = p.XInfoStream(ctx, key), p.XInfoGroups(ctx, key), p.Time(ctx)
		return nil
	})
	if err != nil {
		return relay.TopicInfo{}, err
	}
	// The dead-letter stream may live on another node of a cluster: a
	// pipeline of its own.
	if dl = c.XLen(ctx, dlKey); dl.Err() != nil && !redis.HasErrorPrefix(dl.Err(), "WRONGTYPE") {
		return relay.TopicInfo{}, dl.Err()
	} else if dl.Err() != nil {
		in.cfg.logger.Warn("redisstreams: dead-letter key is not a stream; its depth is reported as 0",
			"backend", pkg, "topic", topic, "dead_letter_topic", dlKey)
	}
	s := stream.Val()
	if !relayEntries(entries(s.FirstEntry), entries(s.LastEntry)) {
		return relay.TopicInfo{}, fmt.Errorf("%w (%w): stream %q has entries without relay's %q field",
			ErrForeignKey, relay.ErrUnknownTopic, key, fieldPayload)
	}
	info := relay.TopicInfo{
		Topic: topic, Store: key, Messages: uint64(max(s.Length, 0)),
		FirstID: s.FirstEntry.ID, LastID: s.LastEntry.ID,
		FirstTime: idTime(s.FirstEntry.ID), LastTime: idTime(s.LastEntry.ID),
		DeadLetters: uint64(max(dl.Val(), 0)),
	}
	info.Groups, err = in.groups(ctx, c, key, groups.Val(), now.Val())
	if err != nil {
		return relay.TopicInfo{}, err
	}
	return info, nil
}

// entries returns x as a slice of at most one: none for the zero XMessage
// that XINFO STREAM gives an empty stream.
func entries(x redis.XMessage) []redis.XMessage {
	if x.ID == "" {
		return nil
	}
	return []redis.XMessage{x}
}

// groups returns the GroupInfo of each group, sorted by name: the
// consumers and the XPENDING summary of all groups in one pipeline, then the
// redelivery count of each group that has pending entries.
func (in *Inspector) groups(ctx context.Context, c redis.UniversalClient, key string, gs []redis.XInfoGroup, now time.Time) ([]relay.GroupInfo, error) {
	if len(gs) == 0 {
		return nil, nil
	}
	slices.SortFunc(gs, func(a, b redis.XInfoGroup) int { return cmp.Compare(a.Name, b.Name) })
	consumers := make([]*redis.XInfoConsumersCmd, len(gs))
	summaries := make([]*redis.XPendingCmd, len(gs))
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, g := range gs {
			consumers[i] = p.XInfoConsumers(ctx, key, g.Name)
			summaries[i] = p.XPending(ctx, key, g.Name)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	out := make([]relay.GroupInfo, len(gs))
	for i, g := range gs {
		gi := relay.GroupInfo{Group: g.Name, Pending: uint64(max(g.Pending, 0)),
			Lag: uint64(max(g.Lag, 0)), LagKnown: g.Lag >= 0}
		for _, ci := range consumers[i].Val() {
			gi.Consumers = append(gi.Consumers, relay.ConsumerInfo{Name: ci.Name,
				Pending: uint64(max(ci.Pending, 0)), Idle: ci.Idle})
		}
		slices.SortFunc(gi.Consumers, func(a, b relay.ConsumerInfo) int { return cmp.Compare(a.Name, b.Name) })
		if sum := summaries[i].Val(); sum != nil && sum.Count > 0 {
			if t := idTime(sum.Lower); !t.IsZero() {
				gi.OldestPending = max(now.Sub(t), 0)
			}
			n, err := redeliveries(ctx, c, key, g.Name)
			if err != nil {
				return nil, err
			}
			gi.Redeliveries = n
		}
		out[i] = gi
	}
	return out, nil
}

// redeliveries counts the pending entries of group delivered more than once,
// among the oldest [MaxRedeliveryScan].
func redeliveries(ctx context.Context, c redis.UniversalClient, key, group string) (uint64, error) {
	var n uint64
	start := "-"
	for seen := 0; seen < MaxRedeliveryScan; {
		page, err := c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: key, Group: group,
			Start: start, End: "+", Count: int64(min(redeliveryPage, MaxRedeliveryScan-seen))}).Result()
		if err != nil {
			return 0, err
		}
		for _, p := range page {
			if p.RetryCount > 1 {
				n++
			}
		}
		seen += len(page)
		if len(page) < redeliveryPage {
			break
		}
		start = "(" + page[len(page)-1].ID
	}
	return n, nil
}

// checkStream returns an error wrapping relay.ErrUnknownTopic when key does
// not exist, and one wrapping ErrForeignKey and relay.ErrUnknownTopic when it
// is not a stream.
func checkStream(ctx context.Context, c redis.Cmdable, key string) error {
	t, err := c.Type(ctx, key).Result()
	switch {
	case err != nil:
		return err
	case t == "none":
		return fmt.Errorf("%w: no key %q", relay.ErrUnknownTopic, key)
	case t != "stream":
		return fmt.Errorf("%w (%w): key %q is a %s", ErrForeignKey, relay.ErrUnknownTopic, key, t)
	}
	return nil
}

// idTime returns the time of an entry id's milliseconds, zero for an id
// that is not "<ms>-<seq>".
func idTime(id string) time.Time {
	ms, _, ok := parseID(id)
	if !ok {
		return time.Time{}
	}
	return time.UnixMilli(int64(min(ms, 1<<62)))
}

// parseID splits an entry id "<ms>-<seq>".
func parseID(id string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return ms, seq, err1 == nil && err2 == nil
}

// compareIDs orders entry ids as Redis does.
func compareIDs(a, b string) int {
	am, as, _ := parseID(a)
	bm, bs, _ := parseID(b)
	return cmp.Or(cmp.Compare(am, bm), cmp.Compare(as, bs))
}

// DeadLetters yields the entries of the stream of deadLetterTopic that f
// selects, oldest first (XRANGE) or newest first (XREVRANGE) with f.Newest,
// read in pages of 100 entries, so that a long stream is never held at once;
// with f.IDs it reads just those entries (XRANGE id id). Each entry is
// decoded as relay stores it (see the package doc, Wire format): an entry
// that lacks some field, or that relay did not write, is yielded with what
// could be read (no payload field: an empty payload). The age of f.OlderThan
// is measured against the server's TIME, read once per call. The error
// yielded, once and last, wraps [relay.ErrUnknownTopic] when the stream does
// not exist, [ErrForeignKey] when the key is not a stream, or is the Redis
// error; a break in the range loop stops the reads.
func (in *Inspector) DeadLetters(ctx context.Context, deadLetterTopic string, f relay.DeadLetterFilter) iter.Seq2[relay.DeadLetter, error] {
	return func(yield func(relay.DeadLetter, error) bool) {
		if err := in.deadLetters(ctx, deadLetterTopic, f, yield); err != nil {
			yield(relay.DeadLetter{}, fmt.Errorf("%s: inspect dead letters %q: %w", pkg, deadLetterTopic, err))
		}
	}
}

// deadLetters yields what DeadLetters yields, and returns the error to
// yield last; nil once yield returned false.
func (in *Inspector) deadLetters(ctx context.Context, topic string, f relay.DeadLetterFilter, yield func(relay.DeadLetter, error) bool) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return err
	}
	key := streamKey(topic)
	c := boundedClient(ctx, in.client)
	if err := checkStream(ctx, c, key); err != nil {
		return err
	}
	now, err := c.Time(ctx).Result()
	if err != nil {
		return err
	}
	n := 0
	// emit yields the entries f keeps and reports whether to go on.
	emit := func(page []redis.XMessage) bool {
		for _, x := range page {
			m, _ := decode(x.Values) // partial on error: yielded with what it has
			dl := delivery.ReadDeadLetter(topic, x.ID, idTime(x.ID), m)
			if !f.Match(dl, now) {
				continue
			}
			if !yield(dl, nil) {
				return false
			}
			if n++; f.Limit > 0 && n >= f.Limit {
				return false
			}
		}
		return true
	}
	if len(f.IDs) > 0 {
		page, err := byIDs(ctx, c, key, f.IDs, f.Newest)
		if err != nil {
			return err
		}
		emit(page)
		return nil
	}
	from := "-"
	if f.Newest {
		from = "+"
	}
	for {
		var page []redis.XMessage
		if f.Newest {
			page, err = c.XRevRangeN(ctx, key, from, "-", deadLetterPage).Result()
		} else {
			page, err = c.XRangeN(ctx, key, from, "+", deadLetterPage).Result()
		}
		if err != nil {
			return err
		}
		if !emit(page) || len(page) < deadLetterPage {
			return nil
		}
		from = "(" + page[len(page)-1].ID
	}
}

// byIDs reads the entries of ids that exist, in one pipeline, in stream
// order (reversed when newest). Ids that are not entry ids are not there.
func byIDs(ctx context.Context, c redis.Cmdable, key string, ids []string, newest bool) ([]redis.XMessage, error) {
	ids = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { _, _, ok := parseID(id); return !ok })
	slices.SortFunc(ids, compareIDs)
	ids = slices.Compact(ids)
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.XMessageSliceCmd, len(ids))
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.XRangeN(ctx, key, id, id, 1)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var out []redis.XMessage
	for _, cmd := range cmds {
		out = append(out, cmd.Val()...)
	}
	if newest {
		slices.Reverse(out)
	}
	return out, nil
}

// Redrive publishes dl again on to, or on dl.SourceTopic when to is empty,
// as Publish would (XADD, trimmed as [WithMaxLen] says, creating the stream
// when it has none), under a new UUID and with the metadata of
// [delivery.Redriven]'s rule: dl's without relay's dead-letter keys, plus
// [relay.MetadataRedrivenFrom] = "<dl.Topic>/<dl.ID>". Only once Redis
// answered the XADD with the new entry's id does it delete dl (XDEL); that
// XDEL is sent even when ctx ends after the XADD was answered, within 5
// seconds of its own, so that a cancel (an operator stopping a bulk redrive)
// does not leave the message in both places. A failure or a crash in between
// leaves both entries: the message may be delivered twice, never lost. A consumer group created later on the topic
// at [StartOldest] gets the message too.
//
// It returns an error wrapping [relay.ErrInvalidTopic], before anything is
// sent, when the destination (or dl.Topic) is not a valid topic or dl has no
// id; otherwise the Redis error, wrapped (after a failed XDEL the message is
// already published: a second Redrive publishes it again). A dead letter
// deleted meanwhile (XDEL removes nothing) is not an error.
func (in *Inspector) Redrive(ctx context.Context, dl relay.DeadLetter, to string) error {
	dest, err := delivery.RedriveTopic(dl, to)
	if err == nil {
		err = checkDeadLetter(dl)
	}
	if err != nil {
		return fmt.Errorf("%s: redrive %q: %w", pkg, dl.Topic+"/"+dl.ID, err)
	}
	values, err := encode(delivery.Redriven(dl, watermill.NewUUID()))
	if err != nil {
		return fmt.Errorf("%s: redrive %q: %w", pkg, dl.Topic+"/"+dl.ID, err)
	}
	c := boundedClient(ctx, in.client)
	id, err := c.XAdd(ctx, &redis.XAddArgs{Stream: streamKey(dest), Values: values,
		MaxLen: in.cfg.maxLen, Approx: true}).Result()
	if err == nil && id == "" {
		err = errors.New("XADD answered no id")
	}
	if err != nil {
		return fmt.Errorf("%s: redrive %q to %q: publish: %w", pkg, dl.Topic+"/"+dl.ID, dest, err)
	}
	// The message is out: delete the dead letter even when ctx ends now
	// (an operator's Ctrl-C), so that stopping does not leave a duplicate.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if err := boundedClient(dctx, in.client).XDel(dctx, streamKey(dl.Topic), dl.ID).Err(); err != nil {
		return fmt.Errorf("%s: redrive %q to %q: published as %s, but the dead letter was not deleted: %w",
			pkg, dl.Topic+"/"+dl.ID, dest, id, err)
	}
	return nil
}

// checkDeadLetter returns an error wrapping relay.ErrInvalidTopic when dl
// does not say where it is stored.
func checkDeadLetter(dl relay.DeadLetter) error {
	if err := relay.ValidateTopic(dl.Topic); err != nil {
		return fmt.Errorf("dead letter's topic: %w", err)
	}
	if _, _, ok := parseID(dl.ID); !ok {
		return fmt.Errorf("%w: dead letter has no entry id (got %q)", relay.ErrInvalidTopic, dl.ID)
	}
	return nil
}

// Purge deletes dl from its stream (XDEL of dl.ID on dl.Topic). A dead
// letter, or a stream, already gone is not an error. It returns an error
// wrapping [relay.ErrInvalidTopic] when dl does not name a valid topic and
// entry id, or the Redis error (WRONGTYPE for a key that is not a stream).
func (in *Inspector) Purge(ctx context.Context, dl relay.DeadLetter) error {
	err := checkDeadLetter(dl)
	if err == nil {
		err = boundedClient(ctx, in.client).XDel(ctx, streamKey(dl.Topic), dl.ID).Err()
	}
	if err != nil {
		return fmt.Errorf("%s: purge %q: %w", pkg, dl.Topic+"/"+dl.ID, err)
	}
	return nil
}

// deleteIdleConsumerScript deletes consumer ARGV[2] of group ARGV[1] on
// stream KEYS[1] if it has no pending entry, checking and deleting in one
// atomic step, so that an entry the consumer reads in between is not dropped
// with it. It returns 1 when it deleted the consumer, 0 when the group has
// no such consumer, and minus its pending count otherwise.
var deleteIdleConsumerScript = redis.NewScript(`
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] == ARGV[2] then
    if f['pending'] > 0 then return -f['pending'] end
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
    return 1
  end
end
return 0
`)

// DeleteConsumer removes consumer from group on topic's stream (XGROUP
// DELCONSUMER) when XINFO CONSUMERS shows it has no pending entry, in one
// atomic script. It returns an error wrapping [relay.ErrConsumerPending] when
// it has some (nothing is removed), [relay.ErrUnknownConsumer] for a group or
// consumer the stream does not have, [relay.ErrUnknownTopic] when the key
// does not exist, [ErrForeignKey] when it is not a stream, or the Redis
// error.
func (in *Inspector) DeleteConsumer(ctx context.Context, topic, group, consumer string) error {
	if err := in.deleteConsumer(ctx, topic, group, consumer); err != nil {
		return fmt.Errorf("%s: delete consumer %q of group %q on %q: %w", pkg, consumer, group, topic, err)
	}
	return nil
}

func (in *Inspector) deleteConsumer(ctx context.Context, topic, group, consumer string) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return err
	}
	key := streamKey(topic)
	c := boundedClient(ctx, in.client)
	if err := checkStream(ctx, c, key); err != nil {
		return err
	}
	n, err := deleteIdleConsumerScript.Run(ctx, c, []string{key}, group, consumer).Int64()
	switch {
	case redis.HasErrorPrefix(err, "NOGROUP"):
		return fmt.Errorf("%w: no group %q", relay.ErrUnknownConsumer, group)
	case err != nil:
		return err
	case n == 0:
		return fmt.Errorf("%w: group %q has no consumer %q", relay.ErrUnknownConsumer, group, consumer)
	case n < 0:
		return fmt.Errorf("%w: %d entries", relay.ErrConsumerPending, -n)
	}
	return nil
}

// tailPage is the number of entries one XREAD of [Inspector.Tail] reads.
const tailPage = 100

// Tail yields the entries added to topic's stream after the call, as they
// arrive, decoded as [Inspector.DeadLetters] decodes them. It reads with
// XREAD BLOCK (no consumer group: nothing is taken from any group and
// nothing is left on the server), from the stream's last-generated-id at the
// call (XINFO STREAM), each read blocking for up to [WithBlockTimeout] (2
// seconds by default) and holding a connection of the client's pool meanwhile.
// When ctx is done the sequence ends without an error, within the block
// timeout. The error yielded, once and last, wraps [relay.ErrUnknownTopic]
// when the topic has no stream, [ErrForeignKey] when its key is not a
// stream, [relay.ErrInvalidTopic] for an invalid topic, or is the Redis error
// (a server restart ends the sequence with it).
func (in *Inspector) Tail(ctx context.Context, topic string) iter.Seq2[relay.StoredMessage, error] {
	return func(yield func(relay.StoredMessage, error) bool) {
		if err := in.tail(ctx, topic, yield); err != nil && ctx.Err() == nil {
			yield(relay.StoredMessage{}, fmt.Errorf("%s: tail %q: %w", pkg, topic, err))
		}
	}
}

// tail yields what Tail yields and returns the error to yield last; nil
// once yield returned false.
func (in *Inspector) tail(ctx context.Context, topic string, yield func(relay.StoredMessage, error) bool) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return err
	}
	key := streamKey(topic)
	if err := checkStream(ctx, boundedClient(ctx, in.client), key); err != nil {
		return err
	}
	s, err := boundedClient(ctx, in.client).XInfoStream(ctx, key).Result()
	if err != nil {
		return err
	}
	last := s.LastGeneratedID
	for ctx.Err() == nil {
		// Not bounded by ctx's deadline: go-redis adds the block time to
		// the read timeout of a blocking command.
		res, err := in.client.XRead(ctx, &redis.XReadArgs{Streams: []string{key, last},
			Count: tailPage, Block: in.cfg.blockTimeout}).Result()
		if errors.Is(err, redis.Nil) {
			continue // nothing new within the block time
		}
		if err != nil {
			return err
		}
		for _, st := range res {
			for _, x := range st.Messages {
				m, _ := decode(x.Values) // partial on error: yielded with what it has
				if !yield(relay.StoredMessage{Topic: topic, ID: x.ID, Time: idTime(x.ID),
					UUID: m.UUID, Payload: m.Payload, Metadata: m.Metadata}, nil) {
					return nil
				}
				last = x.ID
			}
		}
	}
	return nil
}
