package main

import (
	"log/slog"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/examples/internal/exampleenv"
	"github.com/go-relay/relay/memory"
	"github.com/go-relay/relay/natsjs"
	"github.com/go-relay/relay/redisstreams"
)

// Delivery settings shared by every backend and by the retrier, so that the
// output is the same on all of them. The backoff is short for the demo; the
// defaults are 100ms to 10s.
const (
	maxDeliver = 3
	minBackoff = 20 * time.Millisecond
	maxBackoff = 100 * time.Millisecond

	blockTimeout = 200 * time.Millisecond // Redis only
)

// backend is an opened broker and what it runs on.
type backend struct {
	desc   string
	broker relay.Broker // the caller closes it before calling close
	ns     string       // prefix of every topic: empty unless the server is shared
	env    *exampleenv.Env
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
	b := &backend{desc: env.Desc, ns: env.Namespace("direct"), env: env}
	switch env.Backend {
	case exampleenv.Memory:
		// A plain queue: without native retries, a failed message is
		// redelivered forever and never dead-lettered. retrier.New adds both.
		b.desc = "memory (in-process hub, WithNativeRetries(false))"
		b.broker, err = memory.NewBroker(memory.WithHub(env.Hub), memory.WithNativeRetries(false),
			memory.WithConcurrency(1), memory.WithBackoff(minBackoff, maxBackoff), memory.WithLogger(logger))
	case exampleenv.NATS:
		b.broker, err = natsjs.NewBroker(env.JetStream, natsjs.WithConcurrency(1), natsjs.WithMaxDeliver(maxDeliver),
			natsjs.WithBackoff(minBackoff, maxBackoff), natsjs.WithLogger(logger))
	case exampleenv.Redis:
		b.broker, err = redisstreams.NewBroker(env.Redis, redisstreams.WithConcurrency(1),
			redisstreams.WithMaxDeliver(maxDeliver), redisstreams.WithBackoff(minBackoff, maxBackoff),
			redisstreams.WithLogger(logger),
			// Close waits for a blocking XREADGROUP to end: a short block
			// (2s by default) keeps the demo's exit quick.
			redisstreams.WithBlockTimeout(blockTimeout))
	}
	if err != nil {
		env.Close()
		return nil, err
	}
	return b, nil
}
