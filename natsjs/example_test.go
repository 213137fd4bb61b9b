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

	"github.com/go-relay/relay/internal/natstest"
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
