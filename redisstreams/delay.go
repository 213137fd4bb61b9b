// Delayed delivery: a sorted set per topic, and a mover that moves the due
// entries into the topic's stream with one script.

package redisstreams

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/telemetry"
)

var _ relay.DelayedPublisher = (*Broker)(nil)

const (
	// DelayRecheck is how often a mover looks at the sorted set of a topic it
	// serves when it knows of no entry due sooner: the longest a delayed
	// entry scheduled by another process waits past its due time when that
	// process no longer runs (while it runs, its own mover moves the entry on
	// time).
	DelayRecheck = time.Second
	// moveBatch is the largest number of entries one run of the move script
	// moves, so that a burst of due entries does not block Redis for long.
	moveBatch = 1000
)

// delayedKeySuffix ends the name of a topic's sorted set. It holds '>',
// which no topic may contain, so that no topic's stream has that name.
const delayedKeySuffix = ">delayed"

// delayedKey returns the key of the sorted set of topic's delayed entries. It
// must hash to the slot of the stream key (the topic itself) on a Redis
// Cluster, or the move script, which touches both, is refused (CROSSSLOT).
// The cluster specification (Redis 7.0, "Hash tags") hashes only the part
// of a key between its first '{' and the first '}' after it, when that part
// is not empty, and the whole key otherwise. So:
//
//   - a topic with such a hash tag ("orders{eu}") hashes by it; the topic
//     plus the suffix keeps the same first tag: "orders{eu}>delayed";
//   - a topic without '}' hashes whole; "{" + topic + "}" + suffix has the
//     topic as its tag, whatever '{' the topic holds: "{orders}>delayed";
//   - the rest (a topic with a '}' but no tag, like "a}b" or "x{}y") cannot
//     be a tag, since a tag ends at the first '}': the key then starts with a
//     tag "{s<n>}" chosen so that its CRC16 slot is the topic's,
//     "{s<n>}a}b>delayed".
func delayedKey(topic string) string {
	if _, ok := hashTag(topic); ok {
		return topic + delayedKeySuffix
	}
	if !strings.Contains(topic, "}") {
		return "{" + topic + "}" + delayedKeySuffix
	}
	return "{" + slotTag(keySlot(topic)) + "}" + topic + delayedKeySuffix
}

// hashTag returns the hash tag of key by the cluster specification's rule,
// and whether it has one.
func hashTag(key string) (string, bool) {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return "", false
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return "", false
	}
	return key[open+1 : open+1+end], true
}

// keySlot returns the cluster slot of key: CRC16 (XMODEM) of its hash tag or
// of the whole key, modulo 16384.
func keySlot(key string) uint16 {
	if tag, ok := hashTag(key); ok {
		key = tag
	}
	return crc16(key) % 16384
}

// crc16 is the CRC16 of the cluster specification: polynomial 0x1021,
// initial value 0, no reflection (CRC-16/XMODEM).
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// slotTags caches slotTag's answers: slot → tag.
var slotTags sync.Map

// slotTag returns the first tag "s<n>" whose slot is slot. Every slot has
// one (CRC16 spreads short strings over all slots); the search tries about
// 16384 strings, a few milliseconds, once per slot and process.
func slotTag(slot uint16) string {
	if tag, ok := slotTags.Load(slot); ok {
		return tag.(string)
	}
	for n := 0; ; n++ {
		tag := "s" + strconv.Itoa(n)
		if crc16(tag)%16384 == slot {
			slotTags.Store(slot, tag)
			return tag
		}
	}
}

// dueScore is the score of an entry due at at: milliseconds since the Unix
// epoch, rounded up, so that a mover that moves scores up to its clock's
// current millisecond (rounded down) never moves an entry early.
func dueScore(at time.Time) int64 {
	ns := at.UnixNano()
	ms := ns / 1e6
	if ns%1e6 > 0 {
		ms++
	}
	return ms
}

// delayedMember returns the sorted-set member of m: a msgpack array of
// strings, a new random id (so that two schedules of one message are two
// members) then the XADD field-value list of m, which the move script hands
// to XADD as it is.
func delayedMember(m delivery.Message) (string, error) {
	values, err := encode(m)
	if err != nil {
		return "", err
	}
	fields := make([]string, 0, 1+len(values))
	fields = append(fields, watermill.NewULID())
	for _, v := range values {
		switch v := v.(type) {
		case string:
			fields = append(fields, v)
		case []byte:
			fields = append(fields, string(v))
		}
	}
	b, err := msgpack.Marshal(fields)
	if err != nil {
		return "", fmt.Errorf("encode delayed entry: %w", err)
	}
	return string(b), nil
}

// moveScript moves the entries of the sorted set KEYS[1] whose score is at
// most ARGV[1] (now, in ms) into the stream KEYS[2], at most ARGV[2] of them,
// oldest due first, trimming the stream to ARGV[3] entries (approximately)
// when that is above 0. Each XADD and its ZREM run in one script, which Redis
// runs atomically and writes to the append-only file and replicas as one
// transaction: a crash keeps both or neither, and two movers never move one
// member twice. It returns the number moved and the score of the next entry,
// or -1 when the set is empty.
var moveScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local maxlen = tonumber(ARGV[3])
for _, member in ipairs(due) do
  local f = cmsgpack.unpack(member)
  if maxlen > 0 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', unpack(f, 2))
  else
    redis.call('XADD', KEYS[2], '*', unpack(f, 2))
  end
  redis.call('ZREM', KEYS[1], member)
end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #head == 0 then
  return {#due, -1}
end
return {#due, tonumber(head[2])}
`)

// PublishAt stores payload, with a new UUID and no metadata, to be appended
// to topic's stream no earlier than at: it is [relay.DelayedPublisher] on
// Redis. Until then the entry waits in a sorted set of its own (see the
// package doc, Delayed delivery); PublishAt returns once Redis answered its
// ZADD, which makes it as durable as the server's persistence settings. A
// time at or before now is published at once, as by [Broker.Publish]. A time
// further ahead than [WithMaxDelay] (by default [relay.DefaultMaxDelay], 30
// days), or the zero time, returns an error wrapping [relay.ErrInvalidDelay]
// and stores nothing; the other errors are those of Publish. The broker's
// mover serves topic from then on, until Close.
func (b *Broker) PublishAt(ctx context.Context, topic string, payload []byte, at time.Time) error {
	if ctx == nil {
		return fmt.Errorf("%s: publish %q: %w", pkg, topic, relay.ErrNilContext)
	}
	if err := relay.ValidateTopic(topic); err != nil {
		return fmt.Errorf("%s: publish %q: %w", pkg, topic, err)
	}
	if err := delivery.CheckDue(at, time.Now(), b.e.cfg.maxDelay); err != nil {
		return fmt.Errorf("%s: publish %q: %w", pkg, topic, err)
	}
	msg := delivery.Message{UUID: watermill.NewUUID(), Payload: payload}
	if err := b.e.publishAt(ctx, nil, topic, []delivery.Message{msg}, []time.Time{at}); err != nil {
		return fmt.Errorf("%s: publish %q: %w", pkg, topic, err)
	}
	return nil
}

// publishAt publishes msgs[i] due at due[i]: those due by now with publish,
// the others into topic's sorted set in one pipeline, and then makes the
// engine's mover serve topic. msgCtxs, when not nil, are the messages' own
// contexts (see publish); a delayed message's producer span ends when it is
// stored in the sorted set, and the trace context it carries is that span's.
func (e *engine) publishAt(ctx context.Context, msgCtxs []context.Context, topic string, msgs []delivery.Message, due []time.Time) (err error) {
	now := time.Now()
	var direct []delivery.Message
	var directCtxs []context.Context
	var later []redis.Z
	var spans []telemetry.Publish
	soonest := time.Time{}
	limit := e.bulkLimit(ctx)
	defer func() {
		for _, s := range spans {
			s.End(err)
		}
	}()
	for i, m := range msgs {
		mctx := ctx
		if msgCtxs != nil {
			mctx = msgCtxs[i]
		}
		if !due[i].After(now) {
			direct, directCtxs = append(direct, m), append(directCtxs, mctx)
			continue
		}
		var span telemetry.Publish
		span, m.Metadata = e.tel.StartPublish(mctx, topic, m.UUID, m.Metadata)
		spans = append(spans, span)
		member, err := delayedMember(m)
		if err == nil && int64(len(member)) > limit {
			err = fmt.Errorf("%w: delayed entry of %d bytes exceeds the server's proto-max-bulk-len of %d bytes",
				relay.ErrPayloadTooLarge, len(member), limit)
		}
		if err != nil {
			return err
		}
		later = append(later, redis.Z{Score: float64(dueScore(due[i])), Member: member})
		if soonest.IsZero() || due[i].Before(soonest) {
			soonest = due[i]
		}
	}
	if len(direct) > 0 {
		if err := e.publish(ctx, directCtxs, topic, direct...); err != nil {
			return err
		}
	}
	if len(later) == 0 {
		return nil
	}
	if e.subs.Closed() {
		return relay.ErrClosed
	}
	if err := e.schedule(ctx, delayedKey(topic), later); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return fmt.Errorf("zadd %q: %w", delayedKey(topic), err)
	}
	e.movers().serve(topic, soonest)
	return nil
}

// schedule adds later to the sorted set key with one ZADD, followed by a
// WAIT on the same connection when [WithReplicaAcks] is on.
func (e *engine) schedule(ctx context.Context, key string, later []redis.Z) error {
	if e.cfg.replicaAcks == 0 {
		return e.bounded(ctx).ZAdd(ctx, key, later...).Err()
	}
	m, err := e.masterFor(ctx, key)
	if err != nil {
		e.failedOn(err)
		return err
	}
	var add *redis.IntCmd
	werr := e.pipeWait(ctx, m, func(p redis.Pipeliner) { add = p.ZAdd(ctx, key, later...) })
	if err := add.Err(); err != nil {
		werr = err
	}
	e.failedOn(werr)
	return werr
}

// movers returns the engine's mover, starting it on first use.
func (e *engine) movers() *mover {
	e.moverOnce.Do(func() {
		e.mover = &mover{e: e, topics: make(map[string]*moverTopic), wake: make(chan struct{}, 1), done: make(chan struct{})}
		go e.mover.run()
	})
	return e.mover
}

// stopMover waits for the mover, if it started, to end; the engine's ctx is
// already canceled.
func (e *engine) stopMover() {
	e.moverOnce.Do(func() {}) // no mover may start after this
	if e.mover != nil {
		<-e.mover.done
	}
}

// mover moves the due entries of the topics an engine serves: those it
// subscribed to and those it published delayed entries on. One goroutine per
// engine, from the first such topic until the engine stops.
type mover struct {
	e    *engine
	wake chan struct{} // a topic was added or got an earlier due time
	done chan struct{} // closed when run returns

	mu     sync.Mutex
	topics map[string]*moverTopic // guarded by mu
}

// moverTopic is what the mover knows of one topic's sorted set.
type moverTopic struct {
	next     time.Time // when to run the script next
	failures int       // consecutive failed runs
}

// serve makes the mover serve topic and run its script no later than due
// (at once for the zero time). A nil mover (the engine stopped) does nothing:
// the entries wait for another mover.
func (m *mover) serve(topic string, due time.Time) {
	if m == nil {
		return
	}
	m.mu.Lock()
	t, ok := m.topics[topic]
	if !ok {
		t = &moverTopic{next: due}
		m.topics[topic] = t
	} else if due.Before(t.next) {
		t.next = due
	} else {
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// run is the mover's loop: it runs the script of every topic whose time has
// come, then sleeps until the soonest next time, or until serve wakes it.
func (m *mover) run() {
	defer close(m.done)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	ctx := m.e.ctx
	for {
		next := m.moveDue(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := max(time.Until(next), 0)
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done(): // the engine stops
			return
		case <-m.wake: // a topic was added or is due sooner
		case <-timer.C: // a topic is due, or its re-check
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// moveDue runs the script for every topic that is due and returns when the
// mover must look again: the soonest known due time or re-check.
func (m *mover) moveDue(ctx context.Context) time.Time {
	now := time.Now()
	m.mu.Lock()
	var due []string
	for name, t := range m.topics {
		if !t.next.After(now) {
			due = append(due, name)
		}
	}
	m.mu.Unlock()
	for _, name := range due {
		if ctx.Err() != nil {
			break
		}
		next := m.move(ctx, name)
		m.mu.Lock()
		t := m.topics[name]
		// serve may have moved next up meanwhile: keep the sooner.
		if t.next.After(now) && t.next.Before(next) {
			next = t.next
		}
		t.next = next
		m.mu.Unlock()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	soonest := now.Add(DelayRecheck)
	for _, t := range m.topics {
		if t.next.Before(soonest) {
			soonest = t.next
		}
	}
	return soonest
}

// moveTimeout bounds one run of the move script (with [WithReplicaAcks],
// plus the WAIT timeout, since the run waits for the replicas). It is short because Close
// waits for a move in flight, and against a Redis that does not answer the
// mover must not add to Close's bound; a move cut off by it is run again at
// the next wake-up, and since the script is atomic a move that did run on the
// server is not repeated (its entries left the sorted set).
const moveTimeout = time.Second

// runMove runs the move script once on keys with now (ms) and returns its
// answer. With [WithReplicaAcks] the script runs on one connection to the
// master of keys' slot and, when it moved entries, a WAIT follows on that
// connection (WAIT waits for the writes of its own connection); too few
// acknowledgements return an error wrapping [ErrNotReplicated] with the
// answer, since the entries did move. A run that moved nothing sends no WAIT:
// with a replica down, every re-check would otherwise wait the whole WAIT
// timeout, holding up the mover's other topics.
func (e *engine) runMove(ctx context.Context, keys []string, now int64) ([]int64, error) {
	args := []any{now, moveBatch, e.cfg.maxLen}
	if e.cfg.replicaAcks == 0 {
		return moveScript.Run(ctx, e.bounded(ctx), keys, args...).Int64Slice()
	}
	m, err := e.masterFor(ctx, keys[0])
	if err != nil {
		e.failedOn(err)
		return nil, err
	}
	cn := m.Conn()
	defer cn.Close()
	res, err := moveScript.Run(ctx, cn, keys, args...).Int64Slice()
	if err != nil || len(res) != 2 || res[0] == 0 {
		e.failedOn(err)
		return res, err
	}
	werr := e.waitErr(cn.Do(ctx, "WAIT", e.cfg.replicaAcks, e.cfg.replicaTimeout.Milliseconds()))
	e.failedOn(werr)
	return res, werr
}

// move runs the script on topic until fewer than a batch was due, and
// returns when to run it next: at the next entry's due time, at the
// re-check, or, after a failure, after the read retry backoff.
func (m *mover) move(ctx context.Context, topic string) time.Time {
	e := m.e
	keys := []string{delayedKey(topic), streamKey(topic)}
	for {
		rctx, cancel := context.WithTimeout(ctx, moveTimeout+e.cfg.replicaTimeout)
		now := time.Now()
		res, err := e.runMove(rctx, keys, now.UnixMilli())
		cancel()
		if err == nil && len(res) != 2 {
			err = fmt.Errorf("move script answered %v", res)
		}
		if err != nil && len(res) == 2 {
			// Moved, but too few replicas acknowledged it in time. The
			// script replicates as one transaction: a replica that missed
			// it still holds the entries in the sorted set, and moves them
			// again if promoted (a duplicate, never a loss). Carry on.
			e.cfg.logger.Warn("redisstreams: too few replicas acknowledged a move of delayed entries",
				"backend", pkg, "topic", topic, "key", keys[0], "moved", res[0], "error", err)
			err = nil
		}
		m.mu.Lock()
		t := m.topics[topic]
		if err != nil {
			t.failures++
			f := t.failures
			m.mu.Unlock()
			if ctx.Err() == nil {
				e.cfg.logger.Warn("redisstreams: moving due delayed entries failed; retrying",
					"backend", pkg, "topic", topic, "key", keys[0], "error", err)
			}
			return time.Now().Add(retryDelay(f))
		}
		t.failures = 0
		m.mu.Unlock()
		if res[0] >= moveBatch {
			continue // more may be due
		}
		recheck := now.Add(DelayRecheck)
		if res[1] < 0 {
			return recheck
		}
		if at := time.UnixMilli(res[1]); at.Before(recheck) {
			return at
		}
		return recheck
	}
}
