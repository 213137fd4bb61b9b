package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

// The seed created a topic's stream only on Subscribe, so messages published
// before were refused or lost.
func TestPublishBeforeSubscribeIsDelivered(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	topic := natstest.Topic(t, "orders.placed")
	pub := newBroker(t, js, natsjs.WithGroup("publisher-only"))
	want := []string{"one", "two", "three"}
	for _, p := range want {
		publish(t, pub, topic, []byte(p))
	}
	var mu sync.Mutex
	var got []string
	_, js2 := connect(t, s)
	sub := newBroker(t, js2, natsjs.WithGroup("late"), natsjs.WithConcurrency(1))
	if err := sub.Subscribe(topic, func(p []byte) error {
		mu.Lock()
		got = append(got, string(p))
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == len(want) }, "all messages published before Subscribe")
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got %q, want %q", got, want)
	}
}

// The header overhead of the byte face counts against max_payload, as does
// the room kept for the metadata of a dead letter.
func TestPayloadLimitCountsHeaders(t *testing.T) {
	// An external server has its own max_payload: the sizes follow the
	// server's, which the client learnt from its INFO.
	s := natstest.Start(t, natstest.Config{MaxPayload: 64 << 10})
	nc, js := connect(t, s)
	b := newBroker(t, js)
	limit := int(nc.MaxPayload())
	// "NATS/1.0\r\n", the UUID and Nats-Msg-Id headers of 36-byte UUIDs, "\r\n".
	const headers = 10 + (len(natsjs.UUIDHeader) + 2 + 36 + 2) + (len("Nats-Msg-Id") + 2 + 36 + 2) + 2
	most := limit - natsjs.DeadLetterReserve - headers
	cases := []struct {
		name    string
		size    int
		tooLong bool
	}{
		{"payload, headers and dead-letter reserve exactly at the limit", most, false},
		{"one byte over", most + 1, true},
		{"within max_payload but into the dead-letter reserve", limit - headers, true},
		{"far over", 4 * limit, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			err := b.Publish(ctx, natstest.Topic(t, "sized"), make([]byte, c.size))
			if got := errors.Is(err, relay.ErrPayloadTooLarge); got != c.tooLong {
				t.Errorf("Publish(%d bytes) = %v, want ErrPayloadTooLarge: %v", c.size, err, c.tooLong)
			}
			if !c.tooLong && err != nil {
				t.Errorf("Publish(%d bytes): %v", c.size, err)
			}
		})
	}
}

// One Watermill Publish of many messages is pipelined and fully stored; a
// message over the limit refuses the whole call before anything is sent.
func TestWatermillBatchPublish(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	pub, err := natsjs.NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	topic := natstest.Topic(t, "batch")
	msgs := make([]*message.Message, 500)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, "m%d", i))
	}
	if err := pub.Publish(topic, msgs...); err != nil {
		t.Fatal(err)
	}
	tooBig := append(msgs[:1:1], message.NewMessage(watermill.NewUUID(), make([]byte, 2<<20)))
	if err := pub.Publish(topic, tooBig...); !errors.Is(err, relay.ErrPayloadTooLarge) {
		t.Errorf("Publish with a 2 MiB message = %v, want ErrPayloadTooLarge", err)
	}
	// A retried publish of the same messages is dropped by Nats-Msg-Id.
	if err := pub.Publish(topic, msgs[:10]...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	stream, err := js.Stream(ctx, natsjs.StreamName(topic))
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(len(msgs)) {
		t.Errorf("stream holds %d messages, want %d", info.State.Msgs, len(msgs))
	}
}
