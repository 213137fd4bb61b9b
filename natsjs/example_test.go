package natsjs_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

// connectExample starts an embedded server and connects to it; a real
// program dials its own server.
func connectExample() (*natstest.Server, *nats.Conn, jetstream.JetStream) {
	s, err := natstest.Run(natstest.Config{})
	if err != nil {
		log.Fatal(err)
	}
	nc, err := nats.Connect(s.URL())
	if err != nil {
		log.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	return s, nc, js
}

func ExampleNewBroker() {
	s, nc, js := connectExample()
	defer s.Shutdown()
	defer nc.Close() // the connection is ours: the broker never closes it

	b, err := natsjs.NewBroker(js, natsjs.WithGroup("billing"), natsjs.WithMaxDeliver(5))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	got := make(chan string, 1)
	if err := b.Subscribe("invoices.created", func(payload []byte) error {
		got <- string(payload)
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Publish(ctx, "invoices.created", []byte("invoice 42")); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-got)
	// Output: invoice 42
}

func ExampleNewPublisher() {
	s, nc, js := connectExample()
	defer s.Shutdown()
	defer nc.Close()

	pub, err := natsjs.NewPublisher(js)
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	msg := message.NewMessage(watermill.NewUUID(), []byte("hello"))
	msg.Metadata.Set("trace_id", "t-1")
	if err := pub.Publish("greetings", msg); err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored in stream", natsjs.StreamName("greetings"))
	// Output: stored in stream greetings
}

func ExampleNewSubscriber() {
	s, nc, js := connectExample()
	defer s.Shutdown()
	defer nc.Close()

	pub, err := natsjs.NewPublisher(js)
	if err != nil {
		log.Fatal(err)
	}
	sub, err := natsjs.NewSubscriber(js, natsjs.WithGroup("greeters"))
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()

	// Published before anyone subscribed: the stream keeps it.
	msg := message.NewMessage(watermill.NewUUID(), []byte("hello"))
	msg.Metadata.Set("lang", "en")
	if err := pub.Publish("greetings", msg); err != nil {
		log.Fatal(err)
	}
	ch, err := sub.Subscribe(context.Background(), "greetings")
	if err != nil {
		log.Fatal(err)
	}
	got := <-ch
	got.Ack()
	fmt.Println(string(got.Payload), got.Metadata.Get("lang"), got.UUID == msg.UUID)
	// Output: hello en true
}

func ExampleStreamName() {
	fmt.Println(natsjs.StreamName("orders"))
	fmt.Println(len(natsjs.StreamName("orders.eu")), natsjs.StreamName("orders.eu")[:10])
	// Output:
	// orders
	// 26 orders_eu_
}

func ExampleNewInspector() {
	s, nc, js := connectExample()
	defer s.Shutdown()
	defer nc.Close() // ours: neither the broker nor the inspector closes it

	b, err := natsjs.NewBroker(js, natsjs.WithGroup("billing"))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	fixed := make(chan struct{})
	billed := make(chan string, 1)
	if err := b.Subscribe("invoices", func(p []byte) error {
		select {
		case <-fixed:
			billed <- string(p)
			return nil
		default:
			return fmt.Errorf("no customer for %s: %w", p, relay.ErrPermanent)
		}
	}); err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Publish(ctx, "invoices", []byte("invoice 9")); err != nil {
		log.Fatal(err)
	}

	in, err := natsjs.NewInspector(js)
	if err != nil {
		log.Fatal(err)
	}
	var info relay.TopicInfo
	for info.DeadLetters == 0 || len(info.Groups) == 0 || info.Groups[0].Pending > 0 {
		if ctx.Err() != nil {
			log.Fatal("no dead letter in time")
		}
		time.Sleep(10 * time.Millisecond)
		if info, err = in.Topic(ctx, "invoices"); err != nil {
			log.Fatal(err)
		}
	}
	g := info.Groups[0]
	fmt.Printf("%s in stream %s: %d message, group %s: %d pending, lag %d; %d dead letter\n",
		info.Topic, info.Store, info.Messages, g.Group, g.Pending, g.Lag, info.DeadLetters)

	for dl, err := range in.DeadLetters(ctx, "invoices.dead", relay.DeadLetterFilter{Newest: true}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("dead letter %s: %s from %s after %d attempt: %s\n", dl.ID, dl.Payload, dl.SourceTopic, dl.Attempts, dl.Reason)
		close(fixed)
		if err := in.Redrive(ctx, dl, ""); err != nil { // back to its source topic, under a new UUID
			log.Fatal(err)
		}
	}
	fmt.Println("billed:", <-billed)
	if info, err = in.Topic(ctx, "invoices"); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d messages, %d dead letters\n", info.Messages, info.DeadLetters)
	// Output:
	// invoices in stream invoices: 1 message, group billing: 0 pending, lag 0; 1 dead letter
	// dead letter 1: invoice 9 from invoices after 1 attempt: no customer for invoice 9: relay: permanent failure
	// billed: invoice 9
	// 2 messages, 0 dead letters
}
