package memory

import (
	"container/heap"
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

// Hub is an in-process topic space: what a server is to the NATS and Redis
// backends. Every [Broker], [Publisher] and [Subscriber] made on one hub sees
// the same topics, consumer groups and stored messages. A zero Hub is not
// usable; make one with [NewHub].
//
// Each topic is a log of messages numbered from 1 (the number is the message's
// id, recorded in dead letters as [relay.MetadataSourceID]). Each consumer
// group of a topic has its own position in the log and its own record of
// deliveries and acknowledgements. A message is freed once every group that
// exists has acknowledged it; while a topic has no group, every message
// published to it is kept (up to the capacity, see [WithCapacity]). A group
// created later starts at the oldest message still stored, so messages
// published before any subscriber existed are delivered. Groups live as long
// as the hub: a group whose subscriptions are all closed keeps accumulating
// the topic's messages, as a durable consumer does.
//
// A Hub runs no goroutine and needs no closing; it lives as long as it is
// referenced. It is safe for concurrent use.
type Hub struct {
	capacity int

	mu     sync.Mutex
	topics map[string]*topic
}

// NewHub returns an empty hub. Options: [WithCapacity].
func NewHub(opts ...HubOption) *Hub {
	c := hubConfig{capacity: DefaultCapacity}
	for _, opt := range opts {
		if opt != nil {
			opt(&c)
		}
	}
	return &Hub{capacity: c.capacity, topics: make(map[string]*topic)}
}

// topic returns the topic called name, creating it.
func (h *Hub) topic(name string) *topic {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.topics[name]
	if !ok {
		t = &topic{
			name:     name,
			capacity: h.capacity,
			entries:  make(map[uint64]*entry),
			nextSeq:  1,
			groups:   make(map[string]*group),
		}
		h.topics[name] = t
	}
	return t
}

// publish stores msgs on topic name in order, waiting while the topic is
// full until ctx is done (returning ctx.Err()) or closing is closed (returning
// relay.ErrClosed). It does not copy the messages: callers hand over payloads
// nobody else may change. It stores what fits even when ctx is already done,
// so that a dead letter is written by a stopping consumer whenever possible;
// callers that must honour a done ctx check it first.
func (h *Hub) publish(ctx context.Context, closing <-chan struct{}, name string, msgs ...delivery.Message) error {
	t := h.topic(name)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range msgs {
		for len(t.entries) >= t.capacity {
			if t.space == nil {
				t.space = make(chan struct{})
			}
			space := t.space
			t.mu.Unlock()
			var err error
			select {
			case <-space:
			case <-ctx.Done():
				err = ctx.Err()
			case <-closing:
				err = relay.ErrClosed
			}
			t.mu.Lock()
			if err != nil {
				return err
			}
		}
		t.store(m)
	}
	return nil
}

// topic is one log of a hub. Every field, and every field of its groups and of
// their subscriptions that is marked so, is guarded by mu.
type topic struct {
	name     string
	capacity int

	mu      sync.Mutex
	entries map[uint64]*entry // stored messages by sequence number
	nextSeq uint64            // sequence number of the next message published
	groups  map[string]*group
	space   chan struct{} // closed when an entry is freed; nil while nobody waits
}

// entry is a stored message.
type entry struct {
	msg     delivery.Message
	unacked int // groups that exist and have not acknowledged it
}

func (t *topic) store(m delivery.Message) {
	seq := t.nextSeq
	t.nextSeq++
	t.entries[seq] = &entry{msg: m, unacked: len(t.groups)}
	for _, g := range t.groups {
		g.wake()
	}
}

// free drops entry seq and wakes publishers waiting for space.
func (t *topic) free(seq uint64) {
	delete(t.entries, seq)
	if t.space != nil {
		close(t.space)
		t.space = nil
	}
}

// join returns group name of t, creating it at the oldest message stored.
func (t *topic) join(name string) *group {
	if g, ok := t.groups[name]; ok {
		return g
	}
	g := &group{
		t:       t,
		cursor:  t.nextSeq,
		pending: make(map[uint64]*pending),
		backlog: make([]uint64, 0, len(t.entries)),
	}
	for seq, e := range t.entries {
		e.unacked++
		g.backlog = append(g.backlog, seq)
	}
	slices.Sort(g.backlog)
	t.groups[name] = g
	return g
}

// group is a consumer group of a topic: which messages it was given, which it
// must be given again and when. Guarded by t.mu.
type group struct {
	t       *topic
	backlog []uint64 // messages stored when the group was made, not yet delivered, oldest first
	cursor  uint64   // first message published after the group was made and not yet delivered
	pending map[uint64]*pending
	ready   seqHeap   // redeliveries due now, oldest message first
	delayed delayHeap // redeliveries waiting out their backoff, soonest first
	subs    []*subscription
}

// pending is a message delivered to the group and not acknowledged.
type pending struct {
	attempts int // deliveries made, including one in progress
}

// taken is a delivery handed to a subscription.
type taken struct {
	seq uint64
	d   *delivery.Delivery
}

// next takes the next message for delivery: a due redelivery first, then the
// backlog, then new messages. When there is none, ok is false and wait is the
// time until the next redelivery is due, or negative if none is waiting.
func (g *group) next(now time.Time) (tk taken, wait time.Duration, ok bool) {
	for len(g.delayed) > 0 && !g.delayed[0].at.After(now) {
		heap.Push(&g.ready, heap.Pop(&g.delayed).(delayed).seq)
	}
	for {
		var seq uint64
		switch {
		case len(g.ready) > 0:
			seq = heap.Pop(&g.ready).(uint64)
		case len(g.backlog) > 0:
			seq, g.backlog = g.backlog[0], g.backlog[1:]
		case g.cursor < g.t.nextSeq:
			seq = g.cursor
			g.cursor++
		default:
			if len(g.delayed) > 0 {
				return taken{}, g.delayed[0].at.Sub(now), false
			}
			return taken{}, -1, false
		}
		e, stored := g.t.entries[seq]
		if !stored { // cannot happen: an entry waits for this group's ack
			delete(g.pending, seq)
			continue
		}
		p := g.pending[seq]
		if p == nil {
			p = &pending{}
			g.pending[seq] = p
		}
		p.attempts++
		return taken{seq: seq, d: &delivery.Delivery{
			Topic:   g.t.name,
			ID:      strconv.FormatUint(seq, 10),
			Attempt: p.attempts,
			Message: e.msg,
		}}, 0, true
	}
}

// ack records that the group is done with seq, freeing it when every group is.
func (g *group) ack(seq uint64) {
	if _, ok := g.pending[seq]; !ok {
		return
	}
	delete(g.pending, seq)
	if e, ok := g.t.entries[seq]; ok {
		e.unacked--
		if e.unacked <= 0 {
			g.t.free(seq)
		}
	}
}

// retry makes seq due again after delay.
func (g *group) retry(seq uint64, delay time.Duration, now time.Time) {
	if delay <= 0 {
		heap.Push(&g.ready, seq)
	} else {
		heap.Push(&g.delayed, delayed{seq: seq, at: now.Add(delay)})
	}
	g.wake()
}

// release gives back a delivery that was never processed: it does not count as
// an attempt, and is due again after delay (at once if delay <= 0).
func (g *group) release(seq uint64, delay time.Duration, now time.Time) {
	if p := g.pending[seq]; p != nil && p.attempts > 0 {
		p.attempts--
	}
	g.retry(seq, delay, now)
}

func (g *group) wake() {
	for _, s := range g.subs {
		s.signal()
	}
}

func (g *group) remove(s *subscription) {
	g.subs = slices.DeleteFunc(g.subs, func(x *subscription) bool { return x == s })
	// Another subscription may take what s left.
	g.wake()
}

// seqHeap is a min-heap of sequence numbers.
type seqHeap []uint64

func (h seqHeap) Len() int           { return len(h) }
func (h seqHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h seqHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *seqHeap) Push(x any)        { *h = append(*h, x.(uint64)) }
func (h *seqHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// delayed is a redelivery due at a time.
type delayed struct {
	seq uint64
	at  time.Time
}

// delayHeap is a min-heap of redeliveries by due time.
type delayHeap []delayed

func (h delayHeap) Len() int { return len(h) }
func (h delayHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h delayHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)   { *h = append(*h, x.(delayed)) }
func (h *delayHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
