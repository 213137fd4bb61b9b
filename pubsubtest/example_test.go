package pubsubtest_test

import (
	"fmt"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/memory"
	"github.com/go-relay/relay/pubsubtest"
)

// A backend author runs the suite on a new backend (here the memory backend)
// in about ten lines. An Example cannot take a *testing.T, so the harness is
// built here and handed to the suite from a test function:
//
//	func TestConformance(t *testing.T) {
//		pubsubtest.TestBroker(t, h)
//		pubsubtest.TestWatermill(t, h)
//	}
func ExampleTestBroker() {
	hub, err := memory.NewHub() // the topic space every value of the harness shares
	if err != nil {
		panic(err)
	}
	opts := func(c pubsubtest.Config) []memory.Option {
		return []memory.Option{memory.WithGroup(c.Group), memory.WithMaxDeliver(c.MaxDeliver),
			memory.WithBackoff(c.MinBackoff, c.MaxBackoff), memory.WithConcurrency(c.Concurrency)}
	}
	h := pubsubtest.Harness{
		NewBroker: func(t *testing.T, c pubsubtest.Config) (relay.Broker, error) {
			return memory.NewBroker(append(opts(c), memory.WithHub(hub))...)
		},
		NewPublisher: func(t *testing.T, c pubsubtest.Config) (message.Publisher, error) {
			return memory.NewPublisher(hub, opts(c)...)
		},
		NewSubscriber: func(t *testing.T, c pubsubtest.Config) (message.Subscriber, error) {
			return memory.NewSubscriber(hub, opts(c)...)
		},
		Capabilities: pubsubtest.Capabilities{Ordered: true}, // no server to restart, no payload limit
	}
	fmt.Println("byte face:", h.NewBroker != nil, "Watermill face:", h.NewPublisher != nil && h.NewSubscriber != nil)
	// Output: byte face: true Watermill face: true
}

// DefaultConfig is what the suite asks of the brokers it makes.
func ExampleDefaultConfig() {
	c := pubsubtest.DefaultConfig()
	fmt.Println(c.MaxDeliver, c.MinBackoff, c.MaxBackoff, c.Concurrency, c.AckWait)
	// Output: 3 20ms 100ms 4 2s
}

// DeriveFeatures shows which parts of Watermill's universal suite a backend
// is held to.
func ExampleDeriveFeatures() {
	f := pubsubtest.DeriveFeatures(pubsubtest.Capabilities{Ordered: true})
	fmt.Println("consumer groups:", f.ConsumerGroups)
	fmt.Println("persistent between instances:", f.Persistent)
	fmt.Println("guaranteed order:", f.GuaranteedOrder, f.GuaranteedOrderWithSingleSubscriber)
	fmt.Println("exactly once:", f.ExactlyOnceDelivery)
	fmt.Println("new subscriber receives old messages:", f.NewSubscriberReceivesOldMessages)
	// Output:
	// consumer groups: true
	// persistent between instances: true
	// guaranteed order: true true
	// exactly once: false
	// new subscriber receives old messages: false
}
