package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay/internal/natstest"
	"github.com/go-relay/relay/internal/redistest"
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
}

// backend is one broker, seen through its Watermill face: one publisher and a
// subscriber per consumer group.
type backend struct {
	desc       string
	publisher  message.Publisher
	subscriber func(group string) (message.Subscriber, error)
	closers    []func() // run in reverse order by close
}

func (b *backend) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
}

// openBackend connects to (or starts) the broker named by cfg.backend.
func openBackend(cfg config, s settings) (*backend, error) {
	switch cfg.backend {
	case "memory":
		return openMemory(s)
	case "nats":
		return openNATS(cfg.natsURL, s)
	case "redis":
		return openRedis(cfg.redisURL, s)
	}
	return nil, fmt.Errorf("unknown backend %q (want memory, nats or redis)", cfg.backend)
}

func openMemory(s settings) (*backend, error) {
	hub, err := memory.NewHub()
	if err != nil {
		return nil, err
	}
	opts := func(group string) []memory.Option {
		return []memory.Option{memory.WithGroup(group), memory.WithLogger(s.logger), memory.WithConcurrency(s.concurrency),
			memory.WithMaxDeliver(s.maxDeliver), memory.WithBackoff(s.minBackoff, s.maxBackoff)}
	}
	pub, err := memory.NewPublisher(hub, opts("publisher")...)
	if err != nil {
		return nil, err
	}
	return &backend{
		desc:      "memory (in-process hub)",
		publisher: pub,
		subscriber: func(group string) (message.Subscriber, error) {
			return memory.NewSubscriber(hub, opts(group)...)
		},
	}, nil
}

func openNATS(url string, s settings) (*backend, error) {
	b := &backend{desc: "NATS JetStream at " + url}
	if url == "" {
		// The real nats-server, embedded in this process with a file store in a
		// temporary directory, listening on loopback only.
		srv, err := natstest.Run(natstest.Config{})
		if err != nil {
			return nil, fmt.Errorf("start embedded NATS server: %w", err)
		}
		b.closers = append(b.closers, srv.Shutdown)
		url = srv.URL()
		b.desc = "NATS JetStream, embedded server at " + url
	}
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		b.close()
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	b.closers = append(b.closers, nc.Close) // the brokers never close the connection: we do
	js, err := jetstream.New(nc)
	if err != nil {
		b.close()
		return nil, err
	}
	opts := func(group string) []natsjs.Option {
		return []natsjs.Option{natsjs.WithGroup(group), natsjs.WithLogger(s.logger), natsjs.WithConcurrency(s.concurrency),
			natsjs.WithMaxDeliver(s.maxDeliver), natsjs.WithBackoff(s.minBackoff, s.maxBackoff)}
	}
	pub, err := natsjs.NewPublisher(js, opts("publisher")...)
	if err != nil {
		b.close()
		return nil, err
	}
	b.publisher = pub
	b.subscriber = func(group string) (message.Subscriber, error) { return natsjs.NewSubscriber(js, opts(group)...) }
	return b, nil
}

func openRedis(url string, s settings) (*backend, error) {
	b := &backend{desc: "Redis Streams at " + url}
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
		url = srv.URL()
		b.desc = "Redis Streams, local redis-server at " + srv.Addr()
	}
	ropts, err := redis.ParseURL(url)
	if err != nil {
		b.close()
		return nil, fmt.Errorf("parse -redis-url: %w", err)
	}
	client := redis.NewClient(ropts)
	b.closers = append(b.closers, func() { _ = client.Close() }) // the brokers never close the client: we do
	// Fail fast on a wrong address rather than leave the router waiting.
	pingCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(pingCtx).Err(); err != nil {
		b.close()
		return nil, fmt.Errorf("connect to Redis at %s: %w", ropts.Addr, err)
	}
	opts := func(group string) []redisstreams.Option {
		return []redisstreams.Option{redisstreams.WithGroup(group), redisstreams.WithLogger(s.logger), redisstreams.WithConcurrency(s.concurrency),
			redisstreams.WithMaxDeliver(s.maxDeliver), redisstreams.WithBackoff(s.minBackoff, s.maxBackoff)}
	}
	pub, err := redisstreams.NewPublisher(client, opts("publisher")...)
	if err != nil {
		b.close()
		return nil, err
	}
	b.publisher = pub
	b.subscriber = func(group string) (message.Subscriber, error) {
		return redisstreams.NewSubscriber(client, opts(group)...)
	}
	return b, nil
}
