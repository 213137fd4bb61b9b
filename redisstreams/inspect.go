package redisstreams

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
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
// [Inspector.Redrive] publishes to as Publish would, [WithReplicaAcks] makes
// Redrive wait for replicas as Publish does before it deletes a dead letter
// (same range, same [ErrNotReplicated]), and [WithLogger] receives the
// warnings of [Inspector.Topics]; every other option is checked and ignored
// (the Inspector reports every consumer group, whatever [WithGroup] says).
// It returns an error wrapping [relay.ErrInvalidOption] when client is nil,
// an option is invalid, or WithReplicaAcks is given with a client other
// than a *redis.Client or *redis.ClusterClient. It sends nothing to Redis.
func NewInspector(client redis.UniversalClient, opts ...Option) (*Inspector, error) {
	if client == nil {
		return nil, fmt.Errorf("%s: %w: nil redis client", pkg, relay.ErrInvalidOption)
	}
	cfg, err := newConfig(opts)
	if err == nil {
		err = checkReplicaClient(client, cfg)
	}
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
