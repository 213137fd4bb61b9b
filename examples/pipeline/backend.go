package main

import (
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/metric"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/examples/internal/exampleenv"
	"github.com/go-relay/relay/memory"
	"github.com/go-relay/relay/natsjs"
	"github.com/go-relay/relay/redisstreams"
)

// settings are the delivery options every backend gets, so that a run on one
// backend is comparable with a run on another.
type settings struct {
	logger      *slog.Logger
	concurrency int
	maxDeliver  int
	minBackoff  time.Duration
	maxBackoff  time.Duration
	meter       metric.MeterProvider // every broker records its metrics with it
}

// backend is one broker, seen through its Watermill face: one publisher and a
// subscriber per consumer group.
type backend struct {
	desc       string
	publisher  message.Publisher
	subscriber func(group string) (message.Subscriber, error)
	inspector  relay.Inspector // the backend's own counts, for the summary
	env        *exampleenv.Env
}

// close closes the connection and stops the server, if started here. The
// brokers never close the connection: we do.
func (b *backend) close() { b.env.Close() }

// openBackend connects to (or starts) the broker named by cfg.Backend. A
// connection to NATS tries to reconnect forever, every 250ms.
func openBackend(cfg config, s settings) (*backend, error) {
	env, err := exampleenv.Open(cfg.Flags, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return nil, err
	}
	b := &backend{desc: env.Desc, env: env}
	switch env.Backend {
	case exampleenv.Memory:
		opts := func(group string) []memory.Option {
			return []memory.Option{memory.WithGroup(group), memory.WithLogger(s.logger), memory.WithConcurrency(s.concurrency),
				memory.WithMaxDeliver(s.maxDeliver), memory.WithBackoff(s.minBackoff, s.maxBackoff), memory.WithMeterProvider(s.meter)}
		}
		b.publisher, err = memory.NewPublisher(env.Hub, opts("publisher")...)
		if err == nil {
			b.inspector, err = memory.NewInspector(env.Hub)
		}
		b.subscriber = func(group string) (message.Subscriber, error) {
			return memory.NewSubscriber(env.Hub, opts(group)...)
		}
	case exampleenv.NATS:
		if !env.Shared {
			b.desc = "NATS JetStream, embedded server at " + env.URL
		}
		opts := func(group string) []natsjs.Option {
			return []natsjs.Option{natsjs.WithGroup(group), natsjs.WithLogger(s.logger), natsjs.WithConcurrency(s.concurrency),
				natsjs.WithMaxDeliver(s.maxDeliver), natsjs.WithBackoff(s.minBackoff, s.maxBackoff), natsjs.WithMeterProvider(s.meter)}
		}
		b.publisher, err = natsjs.NewPublisher(env.JetStream, opts("publisher")...)
		if err == nil {
			b.inspector, err = natsjs.NewInspector(env.JetStream)
		}
		b.subscriber = func(group string) (message.Subscriber, error) {
			return natsjs.NewSubscriber(env.JetStream, opts(group)...)
		}
	case exampleenv.Redis:
		if !env.Shared {
			b.desc = "Redis Streams, local redis-server at " + env.Addr
		}
		opts := func(group string) []redisstreams.Option {
			return []redisstreams.Option{redisstreams.WithGroup(group), redisstreams.WithLogger(s.logger),
				redisstreams.WithConcurrency(s.concurrency), redisstreams.WithMaxDeliver(s.maxDeliver),
				redisstreams.WithBackoff(s.minBackoff, s.maxBackoff), redisstreams.WithMeterProvider(s.meter)}
		}
		b.publisher, err = redisstreams.NewPublisher(env.Redis, opts("publisher")...)
		if err == nil {
			b.inspector, err = redisstreams.NewInspector(env.Redis)
		}
		b.subscriber = func(group string) (message.Subscriber, error) {
			return redisstreams.NewSubscriber(env.Redis, opts(group)...)
		}
	}
	if err != nil {
		env.Close()
		return nil, err
	}
	return b, nil
}
