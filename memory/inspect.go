package memory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

var _ relay.Inspector = (*Inspector)(nil)

// Inspector is the [relay.Inspector] of a [Hub]: what its topics hold, how
// far each consumer group is behind, and the dead letters, which it can send
// back (redrive) or remove (purge). It reads the hub's own records under the
// topic's lock, as a snapshot at the call, and never takes a message from a
// group. It is safe for concurrent use.
//
// In memory a consumer group has one consumer, named for the group (as a
// JetStream durable is): its [relay.ConsumerInfo] holds the group's pending
// messages; its Idle is always 0, as a hub keeps no clock per group (it
// would cost every delivery). Ids are the topic's message numbers, from 1,
// in decimal.
type Inspector struct {
	hub        *Hub
	deadLetter func(topic string) string
}

// NewInspector returns the inspector of hub. Of the options only
// [WithDeadLetterTopic] matters: it names the dead-letter topic whose depth
// [Inspector.Topic] reports (topic + ".dead" by default); the others are
// accepted and ignored. A nil hub, a nil Option or an invalid option value
// returns an error wrapping [relay.ErrInvalidOption].
func NewInspector(hub *Hub, opts ...Option) (*Inspector, error) {
	if hub == nil {
		return nil, invalid("nil hub")
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Inspector{hub: hub, deadLetter: cfg.policy.DeadLetterTopic}, nil
}

// Topics returns the hub's topics, sorted, dead-letter topics included. A
// topic exists once something was published on it or a group subscribed to
// it. The error is always nil.
func (in *Inspector) Topics(ctx context.Context) ([]string, error) {
	if ctx == nil {
		return nil, fmt.Errorf("memory: inspect: %w", relay.ErrNilContext)
	}
	var names []string
	in.hub.topics.Range(func(k, _ any) bool {
		names = append(names, k.(string))
		return true
	})
	slices.Sort(names)
	return names, nil
}

// Topic returns what topic holds now: its stored messages (acknowledged or
// not, up to the hub's capacity), the oldest and newest of them, its
// consumer groups and the depth of its dead-letter topic. A group's Lag is
// the number of messages never delivered to it, and always known; Pending
// counts the messages delivered and not acknowledged, those waiting out a
// backoff included. It returns an error wrapping [relay.ErrUnknownTopic]
// for a topic the hub does not have.
func (in *Inspector) Topic(ctx context.Context, topic string) (relay.TopicInfo, error) {
	if ctx == nil {
		return relay.TopicInfo{}, fmt.Errorf("memory: inspect %q: %w", topic, relay.ErrNilContext)
	}
	t := in.hub.lookup(topic)
	if t == nil {
		return relay.TopicInfo{}, fmt.Errorf("memory: inspect %q: %w", topic, relay.ErrUnknownTopic)
	}
	now := time.Now()
	info := relay.TopicInfo{Topic: topic, Store: topic}
	t.mu.Lock()
	info.Messages = uint64(t.count)
	if t.head != nil {
		info.FirstID, info.FirstTime = seqID(t.head.seq), time.Unix(0, t.head.at)
		info.LastID, info.LastTime = seqID(t.tail.seq), time.Unix(0, t.tail.at)
	}
	for _, g := range t.groups {
		info.Groups = append(info.Groups, g.info(now))
	}
	t.mu.Unlock()
	slices.SortFunc(info.Groups, func(a, b relay.GroupInfo) int { return cmp.Compare(a.Group, b.Group) })
	if dl := in.hub.lookup(in.deadLetter(topic)); dl != nil && dl != t {
		dl.mu.Lock()
		info.DeadLetters = uint64(dl.count)
		dl.mu.Unlock()
	}
	return info, nil
}

// info returns what an Inspector shows of g. The caller holds g.t.mu.
// Pending are the deliveries its workers hold and the redeliveries due or
// waiting out a backoff; none of them is acknowledged.
func (g *group) info(now time.Time) relay.GroupInfo {
	gi := relay.GroupInfo{Group: g.name, Lag: uint64(g.queue.len()), LagKnown: true}
	var oldest *entry
	count := func(e *entry, delivered int) {
		gi.Pending++
		if delivered > 1 {
			gi.Redeliveries++
		}
		if oldest == nil || e.seq < oldest.seq {
			oldest = e
		}
	}
	for _, s := range g.subs {
		for _, w := range s.workers {
			if w.tk.e != nil && !w.tk.e.removed {
				count(w.tk.e, w.tk.attempt)
			}
		}
	}
	for _, r := range g.ready {
		if !r.e.removed {
			count(r.e, r.attempts)
		}
	}
	for _, d := range g.delayed {
		if !d.e.removed {
			count(d.e, d.attempts)
		}
	}
	if oldest != nil {
		gi.OldestPending = now.Sub(time.Unix(0, oldest.at))
	}
	gi.Consumers = []relay.ConsumerInfo{{Name: g.name, Pending: gi.Pending}}
	return gi
}

// DeadLetters yields the messages stored on deadLetterTopic that f selects,
// oldest first unless f.Newest, from a snapshot taken at the first
// iteration. An unknown topic yields an error wrapping
// [relay.ErrUnknownTopic], once.
func (in *Inspector) DeadLetters(ctx context.Context, deadLetterTopic string, f relay.DeadLetterFilter) iter.Seq2[relay.DeadLetter, error] {
	return func(yield func(relay.DeadLetter, error) bool) {
		if ctx == nil {
			yield(relay.DeadLetter{}, fmt.Errorf("memory: inspect %q: %w", deadLetterTopic, relay.ErrNilContext))
			return
		}
		t := in.hub.lookup(deadLetterTopic)
		if t == nil {
			yield(relay.DeadLetter{}, fmt.Errorf("memory: inspect %q: %w", deadLetterTopic, relay.ErrUnknownTopic))
			return
		}
		var entries []*entry
		t.mu.Lock()
		for e := t.head; e != nil; e = e.next {
			entries = append(entries, e)
		}
		t.mu.Unlock()
		if f.Newest {
			slices.Reverse(entries)
		}
		now, n := time.Now(), 0
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				yield(relay.DeadLetter{}, fmt.Errorf("memory: inspect %q: %w", deadLetterTopic, err))
				return
			}
			dl := delivery.ReadDeadLetter(deadLetterTopic, seqID(e.seq), time.Unix(0, e.at), e.msg)
			if !f.Match(dl, now) {
				continue
			}
			if !yield(dl, nil) {
				return
			}
			if n++; f.Limit > 0 && n >= f.Limit {
				return
			}
		}
	}
}

// Redrive stores dl again as a new message on to, or on dl.SourceTopic
// when to is empty, and then removes dl from its topic (see
// [relay.Inspector]). It returns an error wrapping [relay.ErrInvalidTopic]
// before anything moves when the destination is invalid, one wrapping
// [relay.ErrDeadLetterGone] before anything moves when dl is no longer in
// its topic (redriven, purged or dropped for room since it was read), and
// waits for room while the destination is full until ctx is done. The check
// and the publish are two steps: two concurrent redrives of one dead letter
// may both publish it (a duplicate, never a loss).
func (in *Inspector) Redrive(ctx context.Context, dl relay.DeadLetter, to string) error {
	if ctx == nil {
		return fmt.Errorf("memory: redrive %q: %w", dl.Topic, relay.ErrNilContext)
	}
	dest, err := delivery.RedriveTopic(dl, to)
	if err != nil {
		return fmt.Errorf("memory: redrive %q: %w", dl.Topic, err)
	}
	if !in.stored(dl) {
		return fmt.Errorf("memory: redrive %q %s: %w", dl.Topic, dl.ID, relay.ErrDeadLetterGone)
	}
	if err := in.hub.publish(ctx, nil, dest, delivery.Redriven(dl, watermill.NewUUID())); err != nil {
		return fmt.Errorf("memory: redrive %q to %q: %w", dl.Topic, dest, err)
	}
	return in.Purge(ctx, dl)
}

// stored reports whether dl is still one of its topic's messages.
func (in *Inspector) stored(dl relay.DeadLetter) bool {
	t := in.hub.lookup(dl.Topic)
	seq, err := strconv.ParseUint(dl.ID, 10, 64)
	if t == nil || err != nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for e := t.head; e != nil; e = e.next {
		if e.seq == seq {
			return !e.removed
		}
	}
	return false
}

// Purge removes dl from its topic: no group is given it from then on. A dead
// letter already gone (purged, redriven or dropped for room) is not an
// error; an id that is not one of the hub's is an error wrapping
// [relay.ErrUnknownTopic] only when its topic is unknown.
func (in *Inspector) Purge(ctx context.Context, dl relay.DeadLetter) error {
	if ctx == nil {
		return fmt.Errorf("memory: purge %q: %w", dl.Topic, relay.ErrNilContext)
	}
	t := in.hub.lookup(dl.Topic)
	if t == nil {
		return fmt.Errorf("memory: purge %q: %w", dl.Topic, relay.ErrUnknownTopic)
	}
	seq, err := strconv.ParseUint(dl.ID, 10, 64)
	if err != nil {
		return fmt.Errorf("memory: purge %q: id %q is not a message number", dl.Topic, dl.ID)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for e := t.head; e != nil; e = e.next {
		if e.seq == seq {
			t.remove(e)
			break
		}
	}
	return nil
}

// remove takes e out of t for good: the groups that still hold it in their
// queues skip it, and an acknowledgement of it changes nothing. The caller
// holds t.mu.
func (t *topic) remove(e *entry) {
	if e.removed {
		return
	}
	e.removed = true
	t.drop(e)
	if t.space != nil { // room for a publisher that waits
		close(t.space)
		t.space = nil
	}
}

// DeleteConsumer deletes the consumer group group of topic, whose one
// consumer is named for it, when nothing is pending and no subscription of
// the group is running: the messages it had not yet taken no longer wait for
// it. A group with pending messages returns an error wrapping
// [relay.ErrConsumerPending]; one with a running subscription an error that
// says so; an unknown topic, group or consumer an error wrapping
// [relay.ErrUnknownConsumer].
func (in *Inspector) DeleteConsumer(ctx context.Context, topic, groupName, consumer string) error {
	if ctx == nil {
		return fmt.Errorf("memory: delete consumer %q: %w", topic, relay.ErrNilContext)
	}
	t := in.hub.lookup(topic)
	if t == nil {
		return fmt.Errorf("memory: delete consumer %q: group %q: %w", topic, groupName, relay.ErrUnknownConsumer)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	i := slices.IndexFunc(t.groups, func(g *group) bool { return g.name == groupName })
	if i < 0 || consumer != groupName {
		return fmt.Errorf("memory: delete consumer %q: group %q, consumer %q: %w", topic, groupName, consumer, relay.ErrUnknownConsumer)
	}
	g := t.groups[i]
	switch {
	case g.info(time.Now()).Pending > 0:
		return fmt.Errorf("memory: delete consumer %q: group %q: %w", topic, groupName, relay.ErrConsumerPending)
	case len(g.subs) > 0:
		return fmt.Errorf("memory: delete consumer %q: group %q: %w", topic, groupName, errSubscribed)
	}
	t.groups = slices.Delete(t.groups, i, i+1)
	for g.queue.len() > 0 {
		if e := g.queue.pop(); !e.removed {
			g.ack(e) // the group no longer holds it back
		}
	}
	return nil
}

// errSubscribed is why a group with a running subscription is not deleted.
var errSubscribed = errors.New("the group has a running subscription")

// seqID is the id of the message numbered seq.
func seqID(seq uint64) string { return strconv.FormatUint(seq, 10) }
