package main

import (
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/examples/internal/exampleenv"
	"github.com/go-relay/relay/memory"
	"github.com/go-relay/relay/natsjs"
	"github.com/go-relay/relay/redisstreams"
)

// Delivery settings of every backend. The backoff is short for the demo; the
// defaults are 100ms to 10s.
const (
	maxDeliver = 3
	minBackoff = 20 * time.Millisecond
	maxBackoff = 100 * time.Millisecond

	blockTimeout = 200 * time.Millisecond // Redis only
)

// backend is one broker seen through both faces: byte-face brokers and
// Watermill subscribers per consumer group, and one Watermill publisher. All
// share one topic space, and each face reads what the other wrote.
type backend struct {
	desc       string
	ns         string // prefix of every topic: empty unless the server is shared
	broker     func(group string) (relay.Broker, error)
	subscriber func(group string) (message.Subscriber, error)
	publisher  message.Publisher
	inspector  relay.Inspector // what an ops tool reads and redrives with
	env        *exampleenv.Env
}

// close closes the connection and stops the server, if started here.
func (b *backend) close() { b.env.Close() }

// openBackend connects to (or starts) the broker named by cfg.Backend. Every
// subscription handles one message at a time, so the output keeps its order.
func openBackend(cfg config, logger *slog.Logger) (*backend, error) {
	env, err := exampleenv.Open(cfg.Flags)
	if err != nil {
		return nil, err
	}
	b := &backend{desc: env.Desc, ns: env.Namespace("deadletters"), env: env}
	switch env.Backend {
	case exampleenv.Memory:
		hub := env.Hub // the topic space that every face shares
		opts := func(group string) []memory.Option {
			return []memory.Option{memory.WithGroup(group), memory.WithConcurrency(1), memory.WithMaxDeliver(maxDeliver),
				memory.WithBackoff(minBackoff, maxBackoff), memory.WithLogger(logger)}
		}
		b.publisher, err = memory.NewPublisher(hub)
		if err == nil {
			b.inspector, err = memory.NewInspector(hub)
		}
		b.broker = func(group string) (relay.Broker, error) {
			return memory.NewBroker(append(opts(group), memory.WithHub(hub))...)
		}
		b.subscriber = func(group string) (message.Subscriber, error) { return memory.NewSubscriber(hub, opts(group)...) }
	case exampleenv.NATS:
		js := env.JetStream
		opts := func(group string) []natsjs.Option {
			return []natsjs.Option{natsjs.WithGroup(group), natsjs.WithConcurrency(1), natsjs.WithMaxDeliver(maxDeliver),
				natsjs.WithBackoff(minBackoff, maxBackoff), natsjs.WithLogger(logger)}
		}
		b.publisher, err = natsjs.NewPublisher(js)
		if err == nil {
			b.inspector, err = natsjs.NewInspector(js)
		}
		b.broker = func(group string) (relay.Broker, error) { return natsjs.NewBroker(js, opts(group)...) }
		b.subscriber = func(group string) (message.Subscriber, error) { return natsjs.NewSubscriber(js, opts(group)...) }
	case exampleenv.Redis:
		client := env.Redis
		opts := func(group string) []redisstreams.Option {
			return []redisstreams.Option{redisstreams.WithGroup(group), redisstreams.WithConcurrency(1),
				redisstreams.WithMaxDeliver(maxDeliver), redisstreams.WithBackoff(minBackoff, maxBackoff),
				redisstreams.WithLogger(logger),
				// Close waits for a blocking XREADGROUP to end: a short block
				// (2s by default) keeps the demo's exit quick.
				redisstreams.WithBlockTimeout(blockTimeout)}
		}
		b.publisher, err = redisstreams.NewPublisher(client)
		if err == nil {
			b.inspector, err = redisstreams.NewInspector(client)
		}
		b.broker = func(group string) (relay.Broker, error) { return redisstreams.NewBroker(client, opts(group)...) }
		b.subscriber = func(group string) (message.Subscriber, error) {
			return redisstreams.NewSubscriber(client, opts(group)...)
		}
	}
	if err != nil {
		env.Close()
		return nil, err
	}
	return b, nil
}
