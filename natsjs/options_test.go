package natsjs_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

// Fields relay relies on are set back after WithConsumerConfig; the others
// are the caller's.
func TestConfigOverrides(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	b := newBroker(t, js,
		natsjs.WithAckWait(7*time.Second),
		natsjs.WithStreamConfig(func(c *jetstream.StreamConfig) {
			c.Storage = jetstream.MemoryStorage
			c.Name = "ignored"
			c.MaxMsgs = 1000
		}),
		natsjs.WithConsumerConfig(func(c *jetstream.ConsumerConfig) {
			c.MaxDeliver = 5
			c.AckWait = time.Minute
			c.MaxAckPending = 42
		}),
	)
	topic := natstest.Topic(t, "configured")
	if err := b.Subscribe(topic, func([]byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	stream, err := js.Stream(ctx, natsjs.StreamName(topic))
	if err != nil {
		t.Fatal(err)
	}
	sc := stream.CachedInfo().Config
	if sc.Storage != jetstream.MemoryStorage || sc.MaxMsgs != 1000 {
		t.Errorf("stream storage %v, max msgs %d; want memory, 1000", sc.Storage, sc.MaxMsgs)
	}
	c, err := stream.Consumer(ctx, natsjs.ConsumerName(natsjs.DefaultGroup))
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	if cc.MaxDeliver != -1 || cc.AckWait != 7*time.Second || cc.MaxAckPending != 42 || cc.AckPolicy != jetstream.AckExplicitPolicy {
		t.Errorf("consumer max deliver %d, ack wait %v, max ack pending %d, ack policy %v; want -1, 7s, 42, explicit",
			cc.MaxDeliver, cc.AckWait, cc.MaxAckPending, cc.AckPolicy)
	}
}

func TestInvalidOptions(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	cases := []struct {
		name string
		js   jetstream.JetStream
		opt  natsjs.Option
	}{
		{"nil JetStream", nil, natsjs.WithGroup("g")},
		{"nil option", js, nil},
		{"empty group", js, natsjs.WithGroup("")},
		{"zero max deliver", js, natsjs.WithMaxDeliver(0)},
		{"negative max deliver", js, natsjs.WithMaxDeliver(-1)},
		{"zero ack wait", js, natsjs.WithAckWait(0)},
		{"zero min backoff", js, natsjs.WithBackoff(0, time.Second)},
		{"max backoff below min", js, natsjs.WithBackoff(time.Second, time.Millisecond)},
		{"nil dead-letter function", js, natsjs.WithDeadLetterTopic(nil)},
		{"zero concurrency", js, natsjs.WithConcurrency(0)},
		{"zero request timeout", js, natsjs.WithRequestTimeout(0)},
		{"nil logger", js, natsjs.WithLogger(nil)},
		{"nil tracer provider", js, natsjs.WithTracerProvider(nil)},
		{"nil meter provider", js, natsjs.WithMeterProvider(nil)},
		{"nil propagators", js, natsjs.WithPropagators(nil)},
		{"nil stream config", js, natsjs.WithStreamConfig(nil)},
		{"nil consumer config", js, natsjs.WithConsumerConfig(nil)},
		{"ack wait of 1ns, a busy loop", js, natsjs.WithAckWait(time.Nanosecond)},
		{"ack wait below the minimum", js, natsjs.WithAckWait(natsjs.MinAckWait - 1)},
		{"ack wait over the maximum", js, natsjs.WithAckWait(natsjs.MaxAckWait + 1)},
		{"min backoff of 1ns, a busy loop", js, natsjs.WithBackoff(time.Nanosecond, time.Second)},
		{"concurrency over the bound", js, natsjs.WithConcurrency(relay.MaxConcurrency + 1)},
		{"concurrency of max int", js, natsjs.WithConcurrency(math.MaxInt)},
		{"prefetch of max int, overflowing concurrency+prefetch", js, natsjs.WithPrefetch(math.MaxInt)},
		{"prefetch over the bound", js, natsjs.WithPrefetch(relay.MaxPrefetch + 1)},
		{"request timeout of max duration", js, natsjs.WithRequestTimeout(math.MaxInt64)},
		{"request timeout of 1ns", js, natsjs.WithRequestTimeout(time.Nanosecond)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A valid option first: a nil one among others is refused too.
			_, errB := natsjs.NewBroker(c.js, natsjs.WithGroup("g"), c.opt)
			_, errP := natsjs.NewPublisher(c.js, natsjs.WithGroup("g"), c.opt)
			_, errS := natsjs.NewSubscriber(c.js, natsjs.WithGroup("g"), c.opt)
			for _, err := range []error{errB, errP, errS} {
				if !errors.Is(err, relay.ErrInvalidOption) || !strings.HasPrefix(err.Error(), "natsjs: ") {
					t.Errorf("constructor error = %v, want a natsjs error wrapping ErrInvalidOption", err)
				}
			}
		})
	}
}

// TestGroupOutsideNATSNameRulesDelivers: a group that the server would refuse
// as a durable name (white space, '*', '>') is accepted at construction,
// since ConsumerName rewrites it, and it delivers.
func TestGroupOutsideNATSNameRulesDelivers(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	const group = "a b*>"
	b := newBroker(t, js, natsjs.WithGroup(group))
	got := make(chan []byte, 1)
	topic := natstest.Topic(t, "orders")
	if err := b.Subscribe(topic, func(p []byte) error { got <- p; return nil }); err != nil {
		t.Fatalf("Subscribe with group %q: %v", group, err)
	}
	publish(t, b, topic, []byte("x"))
	select {
	case p := <-got:
		if string(p) != "x" {
			t.Fatalf("delivered %q, want %q", p, "x")
		}
	case <-time.After(wait):
		t.Fatalf("nothing delivered within %v to group %q (consumer %q)", wait, group, natsjs.ConsumerName(group))
	}
}

// TestWideBackoffIsAccepted: WithBackoff(100ms, math.MaxInt64) is valid; the
// overflow it caused at the 38th failure is guarded by the delivery
// package's TestBackoffDoesNotOverflow.
func TestWideBackoffIsAccepted(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	b, err := natsjs.NewBroker(js, natsjs.WithBackoff(100*time.Millisecond, math.MaxInt64))
	if err != nil {
		t.Fatalf("NewBroker(WithBackoff(100ms, max duration)) = %v, want accepted", err)
	}
	_ = b.Close() // Close always returns nil
}

// The exported defaults are the shared ones (also checked at compile time).
func TestDefaultsAreTheSharedOnes(t *testing.T) {
	if natsjs.DefaultMaxDeliver != delivery.DefaultMaxDeliver || natsjs.DefaultMinBackoff != delivery.DefaultMinBackoff ||
		natsjs.DefaultMaxBackoff != delivery.DefaultMaxBackoff {
		t.Error("natsjs defaults differ from internal/delivery's")
	}
}
