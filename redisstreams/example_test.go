package redisstreams_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/redisstreams"
)

// exampleRedis starts a throw-away redis-server for the examples. A program
// makes its own client instead: redis.NewClient(&redis.Options{Addr: "..."}).
func exampleRedis() (rc *redis.Client, stop func()) {
	srv, err := redistest.Run(redistest.Config{})
	if err != nil {
		log.Fatal(err)
	}
	rc = redis.NewClient(&redis.Options{Addr: srv.Addr()})
	return rc, func() { rc.Close(); srv.Shutdown() }
}

func ExampleNewBroker() {
	rc, stop := exampleRedis()
	defer stop()

	b, err := redisstreams.NewBroker(rc, redisstreams.WithGroup("billing"), redisstreams.WithMaxDeliver(5),
		redisstreams.WithBlockTimeout(100*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close() // does not close rc

	// Published before anyone subscribed: still delivered to the new group.
	if err := b.Publish(context.Background(), "invoices", []byte("invoice 42")); err != nil {
		log.Fatal(err)
	}
	got := make(chan string, 1)
	if err := b.Subscribe("invoices", func(payload []byte) error {
		got <- string(payload)
		return nil // nil acknowledges; an error redelivers after a backoff
	}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-got)
	// Output: invoice 42
}

func ExampleNewPublisher() {
	rc, stop := exampleRedis()
	defer stop()

	pub, err := redisstreams.NewPublisher(rc, redisstreams.WithMaxLen(100_000))
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"id":42}`))
	msg.Metadata.Set("type", "OrderPlaced")
	if err := pub.Publish("orders", msg); err != nil {
		log.Fatal(err)
	}
	entries, err := rc.XRange(context.Background(), "orders", "-", "+").Result()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(entries), entries[0].Values["payload"])
	// Output: 1 {"id":42}
}

func ExampleNewSubscriber() {
	rc, stop := exampleRedis()
	defer stop()

	pub, err := redisstreams.NewPublisher(rc)
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	sub, err := redisstreams.NewSubscriber(rc, redisstreams.WithGroup("shipping"),
		redisstreams.WithBlockTimeout(100*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close() // closes the channel; does not close rc

	msgs, err := sub.Subscribe(context.Background(), "orders")
	if err != nil {
		log.Fatal(err)
	}
	msg := message.NewMessage(watermill.NewUUID(), []byte("order 7"))
	msg.Metadata.Set("type", "OrderPlaced")
	if err := pub.Publish("orders", msg); err != nil {
		log.Fatal(err)
	}
	m := <-msgs
	fmt.Println(string(m.Payload), m.Metadata.Get("type"))
	m.Ack()
	// Output: order 7 OrderPlaced
}

func ExampleNewInspector() {
	rc, stop := exampleRedis()
	defer stop()

	b, err := redisstreams.NewBroker(rc, redisstreams.WithGroup("billing"),
		redisstreams.WithBlockTimeout(100*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	if err := b.Publish(ctx, "invoices", []byte("invoice 42")); err != nil {
		log.Fatal(err)
	}
	// A handler that refuses the message for good: it goes to "invoices.dead".
	if err := b.Subscribe("invoices", func([]byte) error {
		return fmt.Errorf("no customer: %w", relay.ErrPermanent)
	}); err != nil {
		log.Fatal(err)
	}

	in, err := redisstreams.NewInspector(rc) // the same options as the broker, where they name topics
	if err != nil {
		log.Fatal(err)
	}
	var info relay.TopicInfo
	for deadline := time.Now().Add(10 * time.Second); info.DeadLetters == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if info, err = in.Topic(ctx, "invoices"); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("stored", info.Messages, "dead", info.DeadLetters)
	for dl, err := range in.DeadLetters(ctx, "invoices.dead", relay.DeadLetterFilter{}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s from %s: %s\n", dl.Payload, dl.SourceTopic, dl.Reason)
	}
	// Output:
	// stored 1 dead 1
	// invoice 42 from invoices: no customer: relay: permanent failure
}
