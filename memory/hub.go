package memory

import (
	"container/heap"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/option"
)

// Hub is an in-process topic space: what a server is to the NATS and Redis
// backends. Every [Broker], [Publisher] and [Subscriber] made on one hub sees
// the same topics, consumer groups and stored messages. A zero Hub is not
// usable; make one with [NewHub].
//
// Each topic is a log of messages numbered from 1 (the number is the message's
// id, recorded in dead letters as [relay.MetadataSourceID]). Each consumer
// group of a topic has its own position in the log and its own record of
// deliveries and acknowledgements. Like a NATS or Redis stream, a topic keeps
// its messages after they are acknowledged, up to its capacity
// ([WithCapacity]): a group created later starts at the oldest message still
// stored, so it gets messages published before it existed, whether or not
// other groups have consumed them. When a topic is full, publishing drops the
// oldest message that every existing group has acknowledged; a message is
// never dropped while a group has not acknowledged it, nor while the topic
// has no group at all. Only when no message can be dropped does Publish wait
// for room. Groups live as long as the hub: a group whose subscriptions are
// all closed still has to acknowledge the topic's new messages, as a durable
// consumer does, so it holds them, and once they fill the topic, Publish
// waits.
//
// A delayed message ([Broker.PublishAt], or a Watermill message with
// [relay.MetadataDelayedUntil]) waits in its topic's heap, outside the log,
// until its due time, and is then stored for every group. One timer per topic
// serves them all.
//
// A Hub runs no goroutine (a topic's timer runs one briefly when a delayed
// message falls due) and needs no closing; it lives as long as it is
// referenced. It is safe for concurrent use.
type Hub struct {
	capacity int
	topics   sync.Map // topic name → *topic; read on every publish without a lock
}

// NewHub returns an empty hub, whose topics each keep up to [DefaultCapacity]
// messages, acknowledged or not, or the number of [WithCapacity]; see [Hub]
// for which message a full topic drops. Options: [WithCapacity]. An invalid
// option value, or a nil HubOption, returns an error wrapping
// [relay.ErrInvalidOption].
func NewHub(opts ...HubOption) (*Hub, error) {
	c := hubConfig{capacity: DefaultCapacity}
	if err := option.Apply(pkg, &c, opts); err != nil {
		return nil, err
	}
	return makeHub(c), nil
}

func makeHub(c hubConfig) *Hub {
	return &Hub{capacity: c.capacity}
}

// topic returns the topic called name, creating it.
func (h *Hub) topic(name string) *topic {
	if t, ok := h.topics.Load(name); ok {
		return t.(*topic)
	}
	t, _ := h.topics.LoadOrStore(name, &topic{name: name, capacity: h.capacity, nextSeq: 1})
	return t.(*topic)
}

// publish stores msgs on topic name in order, waiting while the topic is
// full until ctx is done (returning ctx.Err()) or closing is closed (returning
// relay.ErrClosed). It does not copy the messages: callers hand over payloads
// nobody else may change. It stores what fits even when ctx is already done,
// so that a dead letter is written by a stopping consumer whenever possible;
// callers that must honour a done ctx check it first.
func (h *Hub) publish(ctx context.Context, closing <-chan struct{}, name string, msgs ...delivery.Message) error {
	return h.topic(name).publish(ctx, closing, msgs...)
}

// lookup returns the topic called name if it exists. Every topic of a hub
// was made for a name that passed relay.ValidateTopic, so a topic that exists
// needs no validation again.
func (h *Hub) lookup(name string) *topic {
	if t, ok := h.topics.Load(name); ok {
		return t.(*topic)
	}
	return nil
}

// validTopic returns the topic called name, creating it, or the error of
// relay.ValidateTopic for an invalid name.
func (h *Hub) validTopic(name string) (*topic, error) {
	if t := h.lookup(name); t != nil {
		return t, nil
	}
	if err := relay.ValidateTopic(name); err != nil {
		return nil, err
	}
	return h.topic(name), nil
}

// publish is [Hub.publish] on t. When the topic is full it first drops the
// oldest message that every group has acknowledged, and waits only while
// there is none.
func (t *topic) publish(ctx context.Context, closing <-chan struct{}, msgs ...delivery.Message) error {
	_, err := t.publishEach(closing, msgs, func(int) context.Context { return ctx })
	return err
}

// publishEach is publish with a context per message: ctxOf(i) bounds the
// wait of msgs[i] for room. It takes the topic's lock and the time once for
// all of msgs (the lock is released only while waiting for room). It
// returns how many of msgs it stored, in order, and the error that stopped it.
func (t *topic) publishEach(closing <-chan struct{}, msgs []delivery.Message, ctxOf func(i int) context.Context) (int, error) {
	// A run's entries are one allocation: the array lives until the last
	// of them is dropped, as the run's payload buffer does (Publisher.Publish).
	var run []entry
	if len(msgs) > 1 {
		run = make([]entry, len(msgs))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now().UnixNano()
	for i, m := range msgs {
		for t.count >= t.capacity {
			if len(t.acked) > 0 {
				if e := t.acked.pop(); !e.removed {
					t.drop(e)
				}
				continue
			}
			if t.space == nil {
				t.space = make(chan struct{})
			}
			space := t.space
			t.mu.Unlock()
			var err error
			select {
			case <-space:
			case <-ctxOf(i).Done():
				err = ctxOf(i).Err()
			case <-closing:
				err = relay.ErrClosed
			}
			t.mu.Lock()
			if err != nil {
				return i, err
			}
			now = time.Now().UnixNano()
		}
		var e *entry
		if run != nil {
			e = &run[i]
		} else {
			e = new(entry)
		}
		t.storeAt(e, m, now)
	}
	return len(msgs), nil
}

// topic is one log of a hub. Every field below mu, and every field of its
// groups and entries that is marked so, is guarded by mu.
type topic struct {
	name     string
	capacity int

	mu         sync.Mutex
	head, tail *entry // the stored messages, oldest first
	count      int    // stored messages
	nextSeq    uint64 // sequence number of the next message published
	groups     []*group
	acked      ackedHeap     // the stored entries every group has acknowledged
	space      chan struct{} // closed when an entry joins acked; nil while nobody waits
	later      laterHeap     // delayed messages not yet due (PublishAt, delayed Watermill messages)
	laterSeq   uint64        // publish order of delayed messages
	timer      *time.Timer   // fires at the soonest of later; nil until the first
}

// entry is a stored message, a node of its topic's list. Guarded by t.mu,
// except msg, seq and at, which never change.
type entry struct {
	msg        delivery.Message
	seq        uint64
	at         int64 // when it was stored, in Unix nanoseconds (no pointer for the GC to scan)
	unacked    int   // groups that exist and have not acknowledged it
	removed    bool  // taken out by an Inspector: groups skip it
	prev, next *entry
}

// store appends m to the topic and hands it to every group.
func (t *topic) store(m delivery.Message) {
	t.storeAt(new(entry), m, time.Now().UnixNano())
}

// storeAt is store into the new entry e, with at, in Unix nanoseconds, as
// the time stored.
func (t *topic) storeAt(e *entry, m delivery.Message, at int64) {
	*e = entry{msg: m, seq: t.nextSeq, at: at, unacked: len(t.groups), prev: t.tail}
	t.nextSeq++
	if t.tail == nil {
		t.head = e
	} else {
		t.tail.next = e
	}
	t.tail = e
	t.count++
	for _, g := range t.groups {
		g.queue.push(e)
		g.wakeOne()
	}
}

// drop removes e, which every group has acknowledged, from the topic.
func (t *topic) drop(e *entry) {
	if e.prev == nil {
		t.head = e.next
	} else {
		e.prev.next = e.next
	}
	if e.next == nil {
		t.tail = e.prev
	} else {
		e.next.prev = e.prev
	}
	e.prev, e.next = nil, nil
	t.count--
}

// join returns group name of t, creating it at the oldest message stored.
func (t *topic) join(name string) *group {
	for _, g := range t.groups {
		if g.name == name {
			return g
		}
	}
	g := &group{t: t, name: name}
	t.acked.clear() // the new group has acknowledged nothing
	for e := t.head; e != nil; e = e.next {
		e.unacked++
		g.queue.push(e)
	}
	t.groups = append(t.groups, g)
	return g
}

// group is a consumer group of a topic: which messages it must be given, and
// when, and which of its workers wait for one. Guarded by t.mu.
type group struct {
	t       *topic
	name    string
	queue   entryQueue // messages never delivered to the group, oldest first
	ready   readyHeap  // redeliveries due now, oldest message first
	delayed delayHeap  // redeliveries waiting out their backoff, soonest first
	idle    []*worker  // workers waiting for a message, most recently idle last

	// The running subscriptions, whose workers hold the deliveries in
	// progress: with ready and delayed, what an Inspector counts as pending.
	subs []*subscription
}

// taken is a delivery handed to a worker.
type taken struct {
	e       *entry
	attempt int // deliveries of e to the group, including this one
}

// next takes the next message for delivery: a due redelivery first, then the
// oldest message never delivered, skipping messages an Inspector removed.
// When there is none, ok is false and wait is the time until the next
// redelivery is due, or negative if none is waiting.
func (g *group) next() (tk taken, wait time.Duration, ok bool) {
	for {
		tk, wait, ok = g.nextStored()
		if !ok || !tk.e.removed {
			return tk, wait, ok
		}
	}
}

// nextStored is next, removed messages included.
func (g *group) nextStored() (tk taken, wait time.Duration, ok bool) {
	if len(g.delayed) > 0 {
		now := time.Now()
		for len(g.delayed) > 0 && !g.delayed[0].at.After(now) {
			d := heap.Pop(&g.delayed).(delayed)
			heap.Push(&g.ready, d.redelivery)
		}
		if len(g.ready) == 0 && g.queue.len() == 0 && len(g.delayed) > 0 {
			return taken{}, g.delayed[0].at.Sub(now), false
		}
	}
	switch {
	case len(g.ready) > 0:
		r := heap.Pop(&g.ready).(redelivery)
		return taken{e: r.e, attempt: r.attempts + 1}, 0, true
	case g.queue.len() > 0:
		return taken{e: g.queue.pop(), attempt: 1}, 0, true
	}
	return taken{}, -1, false
}

// ack records that the group is done with e. Once every group is, e may be
// dropped to make room, and a publisher waiting for room is woken.
func (g *group) ack(e *entry) {
	if e.removed {
		return // no longer counted: see topic.remove
	}
	e.unacked--
	if e.unacked == 0 {
		t := g.t
		t.acked.push(e)
		if t.space != nil {
			close(t.space)
			t.space = nil
		}
	}
}

// retry makes e due again after delay (at once if delay <= 0), as a message
// delivered attempts times.
func (g *group) retry(e *entry, attempts int, delay time.Duration) {
	if delay <= 0 {
		heap.Push(&g.ready, redelivery{e: e, attempts: attempts})
		g.wakeOne()
		return
	}
	heap.Push(&g.delayed, delayed{redelivery: redelivery{e: e, attempts: attempts}, at: time.Now().Add(delay)})
	// Every idle worker recomputes its timer; redeliveries are the rare path.
	g.wakeAll()
}

// wakeOne wakes one idle worker, which takes it off the idle list.
func (g *group) wakeOne() {
	if n := len(g.idle); n > 0 {
		w := g.idle[n-1]
		g.idle[n-1] = nil
		g.idle = g.idle[:n-1]
		w.idle = false
		w.signal()
	}
}

// wakeAll wakes every idle worker.
func (g *group) wakeAll() {
	for len(g.idle) > 0 {
		g.wakeOne()
	}
}

// removeIdle takes w off the idle list.
func (g *group) removeIdle(w *worker) {
	if i := slices.Index(g.idle, w); i >= 0 {
		g.idle = slices.Delete(g.idle, i, i+1)
	}
	w.idle = false
}

// entryQueue is a FIFO of entries in a ring buffer that grows as needed.
type entryQueue struct {
	buf  []*entry
	head int // index of the oldest
	n    int
}

func (q *entryQueue) len() int { return q.n }

func (q *entryQueue) push(e *entry) {
	if q.n == len(q.buf) {
		buf := make([]*entry, max(16, 2*len(q.buf)))
		k := copy(buf, q.buf[q.head:])
		copy(buf[k:], q.buf[:q.head])
		q.buf, q.head = buf, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = e
	q.n++
}

func (q *entryQueue) pop() *entry {
	e := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	if q.n == 0 {
		q.head = 0
		if len(q.buf) > 1024 {
			q.buf = nil // a burst is over: give its buffer back
		}
	}
	return e
}

// redelivery is a message due again for a group, delivered attempts times
// so far.
type redelivery struct {
	e        *entry
	attempts int
}

// readyHeap is a min-heap of redeliveries by sequence number.
type readyHeap []redelivery

// Len implements heap.Interface.
func (h readyHeap) Len() int { return len(h) }

// Less implements heap.Interface.
func (h readyHeap) Less(i, j int) bool { return h[i].e.seq < h[j].e.seq }

// Swap implements heap.Interface.
func (h readyHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }

// Push implements heap.Interface.
func (h *readyHeap) Push(x any) { *h = append(*h, x.(redelivery)) }

// Pop implements heap.Interface.
func (h *readyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = redelivery{}
	*h = old[:len(old)-1]
	return x
}

// delayed is a redelivery due at a time.
type delayed struct {
	redelivery
	at time.Time
}

// delayHeap is a min-heap of redeliveries by due time.
type delayHeap []delayed

// Len implements heap.Interface.
func (h delayHeap) Len() int { return len(h) }

// Less implements heap.Interface.
func (h delayHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].e.seq < h[j].e.seq
	}
	return h[i].at.Before(h[j].at)
}

// Swap implements heap.Interface.
func (h delayHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }

// Push implements heap.Interface.
func (h *delayHeap) Push(x any) { *h = append(*h, x.(delayed)) }

// Pop implements heap.Interface.
func (h *delayHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = delayed{}
	*h = old[:len(old)-1]
	return x
}

// ackedHeap is a min-heap of entries by sequence number. It keeps the
// sequence number next to the pointer, so that sifting reads only the heap's
// array. Acknowledgements come mostly in publish order, so a push mostly
// stops at once.
type ackedHeap []ackedEntry

type ackedEntry struct {
	seq uint64
	e   *entry
}

func (h *ackedHeap) push(e *entry) {
	*h = append(*h, ackedEntry{seq: e.seq, e: e})
	a := *h
	for i := len(a) - 1; i > 0; {
		parent := (i - 1) / 2
		if a[parent].seq <= a[i].seq {
			break
		}
		a[parent], a[i] = a[i], a[parent]
		i = parent
	}
}

// pop removes and returns the entry with the lowest sequence number; h must
// not be empty.
func (h *ackedHeap) pop() *entry {
	a := *h
	top := a[0].e
	last := len(a) - 1
	a[0] = a[last]
	a[last] = ackedEntry{}
	a = a[:last]
	for i := 0; ; {
		least, l, r := i, 2*i+1, 2*i+2
		if l < len(a) && a[l].seq < a[least].seq {
			least = l
		}
		if r < len(a) && a[r].seq < a[least].seq {
			least = r
		}
		if least == i {
			break
		}
		a[i], a[least] = a[least], a[i]
		i = least
	}
	*h = a
	return top
}

// clear empties h, keeping no entry alive.
func (h *ackedHeap) clear() {
	clear(*h)
	*h = (*h)[:0]
}
