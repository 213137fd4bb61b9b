package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.uber.org/goleak"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/memory"
	"github.com/go-relay/relay/pubsubtest"
	"github.com/go-relay/relay/retrier"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, pubsubtest.WatermillSuiteLeaks()...)
}

// harness is the part a backend author writes: everything made within one
// test shares one hub (the backend's topic space) and one meter, and the
// suite's Config becomes the backend's options.
func harness(t *testing.T) pubsubtest.Harness {
	hub, err := memory.NewHub()
	if err != nil {
		t.Fatal(err)
	}
	meter := NewMeter()
	opts := func(c pubsubtest.Config) []memory.Option {
		return []memory.Option{memory.WithGroup(c.Group), memory.WithMaxDeliver(c.MaxDeliver),
			memory.WithBackoff(c.MinBackoff, c.MaxBackoff), memory.WithConcurrency(c.Concurrency)}
	}
	return pubsubtest.Harness{
		NewBroker: func(t *testing.T, c pubsubtest.Config) (relay.Broker, error) {
			inner, err := memory.NewBroker(append(opts(c), memory.WithHub(hub))...)
			if err != nil {
				return nil, err
			}
			return NewBroker(inner, meter), nil
		},
		NewPublisher: func(t *testing.T, c pubsubtest.Config) (message.Publisher, error) {
			inner, err := memory.NewPublisher(hub, opts(c)...)
			if err != nil {
				return nil, err
			}
			return NewPublisher(inner, meter), nil
		},
		NewSubscriber: func(t *testing.T, c pubsubtest.Config) (message.Subscriber, error) {
			inner, err := memory.NewSubscriber(hub, opts(c)...)
			if err != nil {
				return nil, err
			}
			return NewSubscriber(inner, meter), nil
		},
		// What memory guarantees, and thus the wrapper: order with one handler
		// at a time; no server to restart, no payload limit.
		Capabilities: pubsubtest.Capabilities{Ordered: true},
	}
}

func TestConformanceBroker(t *testing.T) {
	pubsubtest.TestBroker(t, harness(t))
}

func TestConformanceWatermill(t *testing.T) {
	pubsubtest.TestWatermill(t, harness(t))
}

// TestHandlesRetries checks what the suite does not: the wrapper reports the
// wrapped broker's retry capability, so that retrier.New adds its loop to a
// plain queue only.
func TestHandlesRetries(t *testing.T) {
	tests := []struct {
		name   string
		native bool
	}{
		{name: "native memory broker", native: true},
		{name: "memory as a plain queue", native: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner, err := memory.NewBroker(memory.WithNativeRetries(tt.native))
			if err != nil {
				t.Fatal(err)
			}
			b := NewBroker(inner, NewMeter())
			r, err := retrier.New(b)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.Close() }) // closes b and inner
			if got := b.HandlesRetries(); got != tt.native {
				t.Errorf("HandlesRetries() = %t, want %t as the wrapped broker", got, tt.native)
			}
			if unchanged := r == relay.Broker(b); unchanged != tt.native {
				t.Errorf("retrier.New returned the broker unchanged: %t, want %t", unchanged, tt.native)
			}
		})
	}
}

// TestDemo runs main's demonstration.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	want := `meter "greetings": 3 published, 4 delivered`
	if !strings.Contains(out.String(), want) {
		t.Fatalf("output lacks %q:\n%s", want, out.String())
	}
}
