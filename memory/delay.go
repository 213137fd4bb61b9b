package memory

import (
	"container/heap"
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

var _ relay.DelayedPublisher = (*Broker)(nil)

// PublishAt stores a copy of payload on topic, to be delivered to every
// consumer group of the hub no earlier than at: it is [relay.DelayedPublisher]
// on the memory backend. It returns once the message is held by the hub
// (durability in memory means no more). A time at or before now is published
// at once, as by [Broker.Publish]; until its time, a delayed message takes no
// room in the topic ([WithCapacity]), and at its time it is stored even when
// the topic is full. Each topic has one timer for all its delayed messages,
// so delivery is late by the Go timer's slack only (well under a millisecond
// on an idle system). A time further ahead than [WithMaxDelay] (by default
// [relay.DefaultMaxDelay], 30 days), or the zero time, returns an error
// wrapping [relay.ErrInvalidDelay] and stores nothing; the other errors are
// those of Publish.
func (b *Broker) PublishAt(ctx context.Context, topic string, payload []byte, at time.Time) error {
	if ctx == nil {
		return fmt.Errorf("memory: publish %q: %w", topic, relay.ErrNilContext)
	}
	t, err := b.e.hub.validTopic(topic)
	if err != nil {
		return fmt.Errorf("memory: publish %q: %w", topic, err)
	}
	if b.e.isClosed() {
		return fmt.Errorf("memory: publish %q: %w", topic, relay.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: publish %q: %w", topic, err)
	}
	if err := delivery.CheckDue(at, time.Now(), b.e.cfg.maxDelay); err != nil {
		return fmt.Errorf("memory: publish %q: %w", topic, err)
	}
	msg := delivery.Message{UUID: watermill.NewUUID(), Payload: append([]byte{}, payload...)}
	span, md := b.e.tel.StartPublish(ctx, topic, msg.UUID, nil)
	msg.Metadata = md
	err = t.publishAt(ctx, b.e.closing, msg, at)
	span.End(err)
	if err != nil {
		return fmt.Errorf("memory: publish %q: %w", topic, err)
	}
	return nil
}

// publishAt is publish for a message due at at: later ones wait in the
// topic's heap of delayed messages.
func (t *topic) publishAt(ctx context.Context, closing <-chan struct{}, m delivery.Message, at time.Time) error {
	if !at.After(time.Now()) {
		return t.publish(ctx, closing, m)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.laterSeq++
	heap.Push(&t.later, later{msg: m, at: at, seq: t.laterSeq})
	if t.later[0].seq == t.laterSeq { // the new soonest: move the timer up
		t.armLocked(time.Now())
	}
	return nil
}

// armLocked sets the topic's one timer to the soonest delayed message. The
// caller holds t.mu.
func (t *topic) armLocked(now time.Time) {
	if len(t.later) == 0 {
		return
	}
	wait := t.later[0].at.Sub(now)
	if t.timer == nil {
		t.timer = time.AfterFunc(wait, t.release)
		return
	}
	t.timer.Reset(wait)
}

// release stores every delayed message that is due, in due order, and sets
// the timer to the next one. It runs on the timer's goroutine; a call that
// finds nothing due (the timer was moved) only re-arms.
func (t *topic) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for len(t.later) > 0 && !t.later[0].at.After(now) {
		t.store(heap.Pop(&t.later).(later).msg)
	}
	t.armLocked(now)
}

// later is a delayed message of a topic; seq breaks ties of due times in
// publish order.
type later struct {
	msg delivery.Message
	at  time.Time
	seq uint64
}

// laterHeap is a min-heap of delayed messages by due time.
type laterHeap []later

// Len implements heap.Interface.
func (h laterHeap) Len() int { return len(h) }

// Less implements heap.Interface.
func (h laterHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}

// Swap implements heap.Interface.
func (h laterHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }

// Push implements heap.Interface.
func (h *laterHeap) Push(x any) { *h = append(*h, x.(later)) }

// Pop implements heap.Interface.
func (h *laterHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = later{}
	*h = old[:len(old)-1]
	return x
}
