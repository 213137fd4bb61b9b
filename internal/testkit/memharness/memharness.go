// Package memharness is the pubsubtest harness of the memory backend, shared
// by memory's conformance test and pubsubtest's own tests (which wrap memory
// brokers in deliberate defects), so the two run the suite on the same setup.
package memharness

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/memory"
	"github.com/go-relay/relay/pubsubtest"
)

// New returns a harness whose values all live on one hub made for t, the
// topic space of every sub-test of t (the suite gives each sub-test its own
// topics and groups). There is no server to restart. Config.AckWait has no
// meaning in memory: a consumer cannot go silent without its Close, which
// gives its messages back at once.
func New(t *testing.T) pubsubtest.Harness {
	t.Helper()
	hub, err := memory.NewHub()
	if err != nil {
		t.Fatal(err)
	}
	options := func(cfg pubsubtest.Config) []memory.Option {
		opts := []memory.Option{
			memory.WithGroup(cfg.Group),
			memory.WithMaxDeliver(cfg.MaxDeliver),
			memory.WithBackoff(cfg.MinBackoff, cfg.MaxBackoff),
			memory.WithConcurrency(cfg.Concurrency),
		}
		if cfg.Logger != nil {
			opts = append(opts, memory.WithLogger(cfg.Logger))
		}
		if cfg.DeadLetterTopic != nil {
			opts = append(opts, memory.WithDeadLetterTopic(cfg.DeadLetterTopic))
		}
		if cfg.TracerProvider != nil {
			opts = append(opts, memory.WithTracerProvider(cfg.TracerProvider))
		}
		if cfg.MeterProvider != nil {
			opts = append(opts, memory.WithMeterProvider(cfg.MeterProvider))
		}
		if cfg.Propagators != nil {
			opts = append(opts, memory.WithPropagators(cfg.Propagators))
		}
		return opts
	}
	return pubsubtest.Harness{
		NewBroker: func(t *testing.T, cfg pubsubtest.Config) (relay.Broker, error) {
			return memory.NewBroker(append(options(cfg), memory.WithHub(hub))...)
		},
		NewPublisher: func(t *testing.T, cfg pubsubtest.Config) (message.Publisher, error) {
			return memory.NewPublisher(hub, options(cfg)...)
		},
		NewSubscriber: func(t *testing.T, cfg pubsubtest.Config) (message.Subscriber, error) {
			return memory.NewSubscriber(hub, options(cfg)...)
		},
		NewInspector: func(t *testing.T) relay.Inspector {
			in, err := memory.NewInspector(hub)
			if err != nil {
				t.Fatal(err)
			}
			return in
		},
		Capabilities: pubsubtest.Capabilities{Persistent: false, Ordered: true, Delayed: true, RetryAfter: true, Telemetry: true},
	}
}
