package memory_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/memory"
)

func ExampleNewBroker() {
	b, err := memory.NewBroker() // a private hub: nothing to set up
	if err != nil {
		panic(err)
	}
	defer b.Close()

	got := make(chan string, 1)
	if err := b.Subscribe("orders.placed", func(p []byte) error {
		got <- string(p)
		return nil
	}); err != nil {
		panic(err)
	}
	if err := b.Publish(context.Background(), "orders.placed", []byte("order 42")); err != nil {
		panic(err)
	}
	fmt.Println(<-got)
	// Output: order 42
}

// Two brokers of different groups on one hub each get every message; brokers
// of the same group would compete for them. As in a NATS or Redis stream, the
// hub keeps a message after it is acknowledged (up to the topic's capacity),
// so a group created later still gets it.
func ExampleNewHub() {
	hub, err := memory.NewHub()
	if err != nil {
		panic(err)
	}
	billing, _ := memory.NewBroker(memory.WithHub(hub), memory.WithGroup("billing"))
	defer billing.Close()
	shipping, _ := memory.NewBroker(memory.WithHub(hub), memory.WithGroup("shipping"))
	defer shipping.Close()

	// Published before any group of the topic exists: the hub keeps it.
	if err := billing.Publish(context.Background(), "orders", []byte("order 7")); err != nil {
		panic(err)
	}
	billed, shipped := make(chan string, 1), make(chan string, 1)
	_ = billing.Subscribe("orders", func(p []byte) error { billed <- string(p); return nil })
	fmt.Println("billing:", <-billed)

	// Billing has handled it; shipping's group, created now, still gets it.
	_ = shipping.Subscribe("orders", func(p []byte) error { shipped <- string(p); return nil })
	fmt.Println("shipping:", <-shipped)
	// Output:
	// billing: order 7
	// shipping: order 7
}

func ExampleWithCapacity() {
	hub, err := memory.NewHub(memory.WithCapacity(1))
	if err != nil {
		panic(err)
	}
	b, _ := memory.NewBroker(memory.WithHub(hub))
	defer b.Close()

	_ = b.Publish(context.Background(), "jobs", []byte("first"))
	// "jobs" has no group yet, so "first" cannot be dropped: the topic is
	// full and Publish waits for room.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	err = b.Publish(ctx, "jobs", []byte("second"))
	fmt.Println(errors.Is(err, context.DeadlineExceeded))

	// A capacity below 1 is refused.
	_, err = memory.NewHub(memory.WithCapacity(0))
	fmt.Println(errors.Is(err, relay.ErrInvalidOption))
	// Output:
	// true
	// true
}

func ExampleNewPublisher() {
	hub, err := memory.NewHub()
	if err != nil {
		panic(err)
	}
	pub, err := memory.NewPublisher(hub)
	if err != nil {
		panic(err)
	}
	defer pub.Close()
	// A broker on the same hub reads what the Watermill publisher wrote.
	b, _ := memory.NewBroker(memory.WithHub(hub))
	defer b.Close()
	got := make(chan string, 1)
	_ = b.Subscribe("greetings", func(p []byte) error { got <- string(p); return nil })

	msg := message.NewMessage(watermill.NewUUID(), []byte("hello"))
	if err := pub.Publish("greetings", msg); err != nil {
		panic(err)
	}
	fmt.Println(<-got)
	// Output: hello
}

func ExampleNewSubscriber() {
	hub, err := memory.NewHub()
	if err != nil {
		panic(err)
	}
	sub, err := memory.NewSubscriber(hub, memory.WithGroup("audit"))
	if err != nil {
		panic(err)
	}
	defer sub.Close()
	pub, _ := memory.NewPublisher(hub)
	defer pub.Close()

	msgs, err := sub.Subscribe(context.Background(), "events")
	if err != nil {
		panic(err)
	}
	sent := message.NewMessage("3f1c-example-uuid", []byte("user signed up"))
	sent.Metadata.Set("trace_id", "t-1")
	if err := pub.Publish("events", sent); err != nil {
		panic(err)
	}

	msg := <-msgs
	fmt.Println(msg.UUID, msg.Metadata.Get("trace_id"), string(msg.Payload))
	msg.Ack() // Nack would redeliver it after the backoff
	// Output: 3f1c-example-uuid t-1 user signed up
}

// An operator's view of a hub: a handler rejects a message for good, it lands
// on the dead-letter topic, and the inspector lists it and sends it back
// (redrive) once the handler is fixed.
func ExampleNewInspector() {
	hub, _ := memory.NewHub()
	b, _ := memory.NewBroker(memory.WithHub(hub), memory.WithGroup("billing"))
	defer b.Close()
	fixed := make(chan struct{})
	billed := make(chan string, 1)
	_ = b.Subscribe("invoices", func(p []byte) error {
		select {
		case <-fixed:
			billed <- string(p)
			return nil
		default:
			return fmt.Errorf("no customer for %s: %w", p, relay.ErrPermanent)
		}
	})
	_ = b.Publish(context.Background(), "invoices", []byte("invoice 9"))

	in, _ := memory.NewInspector(hub)
	ctx := context.Background()
	var dead []relay.DeadLetter
	for len(dead) == 0 {
		time.Sleep(time.Millisecond)
		dead = dead[:0]
		for dl, err := range in.DeadLetters(ctx, "invoices.dead", relay.DeadLetterFilter{}) {
			if err == nil {
				dead = append(dead, dl)
			}
		}
	}
	fmt.Printf("%s from %s after %d attempt: %s\n", dead[0].Payload, dead[0].SourceTopic, dead[0].Attempts, dead[0].Reason)

	close(fixed)
	if err := in.Redrive(ctx, dead[0], ""); err != nil {
		panic(err)
	}
	fmt.Println("billed:", <-billed)
	info, _ := in.Topic(ctx, "invoices")
	fmt.Println("dead letters left:", info.DeadLetters)
	// Output:
	// invoice 9 from invoices after 1 attempt: no customer for invoice 9: relay: permanent failure
	// billed: invoice 9
	// dead letters left: 0
}
