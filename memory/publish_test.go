package memory

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
)

func TestPublishCopiesPayload(t *testing.T) {
	hub := testHub(t)
	b := newTestBroker(t, hub, WithConcurrency(1))
	got := make(chan []byte, 2)
	if err := b.Subscribe("p", func(p []byte) error { got <- p; return nil }); err != nil {
		t.Fatal(err)
	}
	buf := []byte("abc")
	if err := b.Publish(context.Background(), "p", buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, "xyz")
	if err := b.Publish(context.Background(), "p", nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"abc", ""} {
		select {
		case p := <-got:
			if string(p) != want || p == nil {
				t.Fatalf("delivered %q (nil: %v), want %q, not nil", p, p == nil, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no delivery")
		}
	}
}

// A Watermill batch on a full topic stores its messages in order up to the
// one whose own context ends the wait for room, and stores none after it.
func TestWatermillBatchOnFullTopicStopsAtTheMessageWhoseContextEnds(t *testing.T) {
	hub := testHub(t, WithCapacity(3))
	pub, err := NewPublisher(hub)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var msgs []*message.Message
	for i := range 5 {
		msg := message.NewMessage("m"+strconv.Itoa(i), []byte(strconv.Itoa(i)))
		if i == 3 {
			msg.SetContext(short) // the first that finds the topic full (no group: nothing can be dropped)
		}
		msgs = append(msgs, msg)
	}
	err = pub.Publish("batch-full", msgs...)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "m3") {
		t.Fatalf("Publish = %v, want an error wrapping context.DeadlineExceeded naming message m3", err)
	}
	if got := stored(hub, "batch-full"); got != 3 {
		t.Fatalf("topic holds %d messages, want the 3 before m3", got)
	}
	b := newTestBroker(t, hub, WithConcurrency(1))
	var rec recorder
	if err := b.Subscribe("batch-full", rec.handle); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "3 deliveries", func() bool { return rec.len() == 3 })
	if got, want := rec.list(), []string{"0", "1", "2"}; !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}

// A long Watermill batch keeps its order, and a delayed message inside it
// waits for its time while the messages after it do not.
func TestWatermillBatchKeepsOrderAroundADelayedMessage(t *testing.T) {
	hub := testHub(t)
	b := newTestBroker(t, hub, WithConcurrency(1))
	var rec recorder
	if err := b.Subscribe("batch-order", rec.handle); err != nil {
		t.Fatal(err)
	}
	pub, err := NewPublisher(hub)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	const n, delayed = 50, 20
	var msgs []*message.Message
	var want []string
	for i := range n {
		msg := message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i)))
		if i == delayed {
			msg.Metadata.Set(relay.MetadataDelayedUntil, time.Now().Add(time.Second).Format(time.RFC3339Nano))
		} else {
			want = append(want, strconv.Itoa(i))
		}
		msgs = append(msgs, msg)
	}
	want = append(want, strconv.Itoa(delayed))
	if err := pub.Publish("batch-order", msgs...); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "every delivery", func() bool { return rec.len() == n })
	if got := rec.list(); !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}
