package redisstreams_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/redisstreams"
)

// TestSubscribeInitializeCreatesTheGroupWithoutConsuming guards issue 17
// item 8: the Redis subscriber lacked message.SubscribeInitializer, which
// memory's and natsjs' have. SubscribeInitialize must create the stream and
// the group and read nothing, so that with StartNewest a message published
// before the first Subscribe still reaches it.
func TestSubscribeInitializeCreatesTheGroupWithoutConsuming(t *testing.T) {
	srv := redistest.Start(t)
	client := redistest.Client(t, srv)
	topic := srv.KeyPrefix() + "orders.init"
	sub, err := redisstreams.NewSubscriber(client, redisstreams.WithGroup("billing"),
		redisstreams.WithStartID(redisstreams.StartNewest))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	init, ok := any(sub).(message.SubscribeInitializer)
	if !ok {
		t.Fatal("*redisstreams.Subscriber is not a message.SubscribeInitializer")
	}
	for i := range 2 { // the second call finds the group and is nil too
		if err := init.SubscribeInitialize(topic); err != nil {
			t.Fatalf("SubscribeInitialize #%d: %v", i+1, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	groups, err := client.XInfoGroups(ctx, topic).Result()
	if err != nil {
		t.Fatalf("XINFO GROUPS %s: %v", topic, err)
	}
	if len(groups) != 1 || groups[0].Name != "billing" || groups[0].Consumers != 0 || groups[0].Pending != 0 {
		t.Fatalf("groups of %s = %+v, want only billing, with no consumer and nothing pending", topic, groups)
	}

	pub, err := redisstreams.NewPublisher(client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	sent := message.NewMessage(watermill.NewUUID(), []byte("before subscribe"))
	if err := pub.Publish(topic, sent); err != nil {
		t.Fatal(err)
	}
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-ch:
		got.Ack()
		if got.UUID != sent.UUID {
			t.Errorf("received %s, want %s", got.UUID, sent.UUID)
		}
	case <-ctx.Done():
		t.Fatal("the message published between SubscribeInitialize and Subscribe was not delivered")
	}

	if err := init.SubscribeInitialize("orders.*"); !errors.Is(err, relay.ErrInvalidTopic) {
		t.Errorf("SubscribeInitialize of an invalid topic: %v, want ErrInvalidTopic", err)
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := init.SubscribeInitialize(topic); !errors.Is(err, relay.ErrClosed) {
		t.Errorf("SubscribeInitialize after Close: %v, want ErrClosed", err)
	}
}
