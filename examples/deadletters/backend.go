package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/natstest"
	"github.com/go-relay/relay/internal/redistest"
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
	closers    []func() // connection and server, run in reverse order by close
}

func (b *backend) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
}

// openBackend connects to (or starts) the broker named by cfg.backend. Every
// subscription handles one message at a time, so the output keeps its order.
func openBackend(cfg config, logger *slog.Logger) (*backend, error) {
	switch cfg.backend {
	case "memory":
		return openMemory(logger)
	case "nats":
		return openNATS(cfg.natsURL, logger)
	case "redis":
		return openRedis(cfg.redisURL, logger)
	}
	return nil, fmt.Errorf("unknown backend %q (want memory, nats or redis)", cfg.backend)
}

func openMemory(logger *slog.Logger) (*backend, error) {
	hub, err := memory.NewHub() // the topic space that every face shares
	if err != nil {
		return nil, err
	}
	opts := func(group string) []memory.Option {
		return []memory.Option{memory.WithGroup(group), memory.WithConcurrency(1), memory.WithMaxDeliver(maxDeliver),
			memory.WithBackoff(minBackoff, maxBackoff), memory.WithLogger(logger)}
	}
	pub, err := memory.NewPublisher(hub)
	if err != nil {
		return nil, err
	}
	return &backend{
		desc:      "memory (in-process hub)",
		publisher: pub,
		broker: func(group string) (relay.Broker, error) {
			return memory.NewBroker(append(opts(group), memory.WithHub(hub))...)
		},
		subscriber: func(group string) (message.Subscriber, error) {
			return memory.NewSubscriber(hub, opts(group)...)
		},
	}, nil
}

func openNATS(url string, logger *slog.Logger) (*backend, error) {
	b := &backend{desc: "NATS JetStream at " + url, ns: namespace()}
	if url == "" {
		// The real nats-server, embedded in this process: JetStream on a
		// temporary file store, loopback only. Fresh, so no namespace needed.
		srv, err := natstest.Run(natstest.Config{})
		if err != nil {
			return nil, fmt.Errorf("start embedded NATS server: %w", err)
		}
		b.closers = append(b.closers, srv.Shutdown)
		b.desc, b.ns, url = "NATS JetStream (embedded nats-server)", "", srv.URL()
	}
	nc, err := nats.Connect(url)
	if err != nil {
		b.close()
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	b.closers = append(b.closers, nc.Close) // relay never closes the connection it was given
	js, err := jetstream.New(nc)
	if err != nil {
		b.close()
		return nil, err
	}
	opts := func(group string) []natsjs.Option {
		return []natsjs.Option{natsjs.WithGroup(group), natsjs.WithConcurrency(1), natsjs.WithMaxDeliver(maxDeliver),
			natsjs.WithBackoff(minBackoff, maxBackoff), natsjs.WithLogger(logger)}
	}
	if b.publisher, err = natsjs.NewPublisher(js); err != nil {
		b.close()
		return nil, err
	}
	b.broker = func(group string) (relay.Broker, error) { return natsjs.NewBroker(js, opts(group)...) }
	b.subscriber = func(group string) (message.Subscriber, error) { return natsjs.NewSubscriber(js, opts(group)...) }
	return b, nil
}

func openRedis(url string, logger *slog.Logger) (*backend, error) {
	b := &backend{desc: "Redis Streams at " + url, ns: namespace()}
	if url == "" {
		if _, err := exec.LookPath("redis-server"); err != nil {
			return nil, errors.New("no -redis-url given and no redis-server on PATH: install redis-server " +
				"(apt-get install redis-server) or point the example at a server with -redis-url redis://host:6379/0")
		}
		srv, err := redistest.Run(redistest.Config{})
		if err != nil {
			return nil, fmt.Errorf("start redis-server: %w", err)
		}
		b.closers = append(b.closers, func() { _ = srv.Shutdown() })
		b.desc, b.ns, url = "Redis Streams (local redis-server)", "", srv.URL()
	}
	ropts, err := redis.ParseURL(url)
	if err != nil {
		b.close()
		return nil, fmt.Errorf("parse -redis-url: %w", err)
	}
	client := redis.NewClient(ropts)
	b.closers = append(b.closers, func() { _ = client.Close() }) // relay never closes the client it was given
	opts := func(group string) []redisstreams.Option {
		return []redisstreams.Option{redisstreams.WithGroup(group), redisstreams.WithConcurrency(1),
			redisstreams.WithMaxDeliver(maxDeliver), redisstreams.WithBackoff(minBackoff, maxBackoff),
			redisstreams.WithLogger(logger),
			// Close waits for a blocking XREADGROUP to end: a short block
			// (2s by default) keeps the demo's exit quick.
			redisstreams.WithBlockTimeout(blockTimeout)}
	}
	if b.publisher, err = redisstreams.NewPublisher(client); err != nil {
		b.close()
		return nil, err
	}
	b.broker = func(group string) (relay.Broker, error) { return redisstreams.NewBroker(client, opts(group)...) }
	b.subscriber = func(group string) (message.Subscriber, error) {
		return redisstreams.NewSubscriber(client, opts(group)...)
	}
	return b, nil
}

// namespace keeps runs against a long-lived external server apart.
func namespace() string {
	return "deadletters-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "."
}
