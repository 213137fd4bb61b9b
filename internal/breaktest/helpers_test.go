package breaktest_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
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

// quiet discards the backends' logs; the tests look at outcomes, not logs.
var quiet = slog.New(slog.DiscardHandler)

// shutdowner is the bounded Close every backend's Broker and Subscriber offer
// (memory's is being added; tests skip where it is missing).
type shutdowner interface {
	Shutdown(ctx context.Context) error
}

// cfg is the subset of options every backend has. Zero fields take the
// defaults of withDefaults.
type cfg struct {
	group      string
	maxDeliver int
	conc       int
	dl         func(string) string
	ackWait    time.Duration // NATS ack wait / Redis claim timeout
}

func (c cfg) withDefaults() cfg {
	if c.group == "" {
		c.group = "g"
	}
	if c.maxDeliver == 0 {
		c.maxDeliver = 3
	}
	if c.conc == 0 {
		c.conc = 4
	}
	if c.ackWait == 0 {
		c.ackWait = 30 * time.Second
	}
	return c
}

// env is one server (hub, NATS, Redis) on which brokers and faces are made.
type env struct {
	name   string
	prefix string
	broker func(t *testing.T, c cfg) relay.Broker
	pub    func(t *testing.T) message.Publisher
	sub    func(t *testing.T, c cfg) message.Subscriber

	// backend specifics
	hub *memory.Hub
	ns  *natstest.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	rs  *redistest.Server
	rc  redis.UniversalClient
}

func (e *env) topic(s string) string { return e.prefix + s }

func memEnv(t *testing.T) *env {
	hub, err := memory.NewHub()
	must(t, err)
	mo := func(c cfg) []memory.Option {
		c = c.withDefaults()
		o := []memory.Option{memory.WithHub(hub), memory.WithGroup(c.group), memory.WithMaxDeliver(c.maxDeliver),
			memory.WithConcurrency(c.conc), memory.WithBackoff(20*time.Millisecond, 100*time.Millisecond), memory.WithLogger(quiet)}
		if c.dl != nil {
			o = append(o, memory.WithDeadLetterTopic(c.dl))
		}
		return o
	}
	return &env{name: "memory", hub: hub,
		broker: func(t *testing.T, c cfg) relay.Broker {
			b, err := memory.NewBroker(mo(c)...)
			must(t, err)
			t.Cleanup(func() { closeBounded(t, b.Close) })
			return b
		},
		pub: func(t *testing.T) message.Publisher {
			p, err := memory.NewPublisher(hub)
			must(t, err)
			t.Cleanup(func() { p.Close() })
			return p
		},
		sub: func(t *testing.T, c cfg) message.Subscriber {
			opts := mo(c)[1:]
			s, err := memory.NewSubscriber(hub, opts...)
			must(t, err)
			t.Cleanup(func() { closeBounded(t, s.Close) })
			return s
		},
	}
}

func natsEnv(t *testing.T, sc ...natstest.Config) *env {
	ns := natstest.Start(t, sc...)
	nc := natstest.Connect(t, ns)
	js, err := jetstream.New(nc)
	must(t, err)
	no := func(c cfg) []natsjs.Option {
		c = c.withDefaults()
		o := []natsjs.Option{natsjs.WithGroup(c.group), natsjs.WithMaxDeliver(c.maxDeliver), natsjs.WithConcurrency(c.conc),
			natsjs.WithBackoff(20*time.Millisecond, 100*time.Millisecond), natsjs.WithLogger(quiet), natsjs.WithAckWait(c.ackWait),
			natsjs.WithRequestTimeout(10 * time.Second)}
		if c.dl != nil {
			o = append(o, natsjs.WithDeadLetterTopic(c.dl))
		}
		return o
	}
	return &env{name: "nats", ns: ns, nc: nc, js: js,
		broker: func(t *testing.T, c cfg) relay.Broker {
			b, err := natsjs.NewBroker(js, no(c)...)
			must(t, err)
			t.Cleanup(func() { closeBounded(t, b.Close) })
			return b
		},
		pub: func(t *testing.T) message.Publisher {
			p, err := natsjs.NewPublisher(js, no(cfg{})...)
			must(t, err)
			t.Cleanup(func() { p.Close() })
			return p
		},
		sub: func(t *testing.T, c cfg) message.Subscriber {
			s, err := natsjs.NewSubscriber(js, no(c)...)
			must(t, err)
			t.Cleanup(func() { closeBounded(t, s.Close) })
			return s
		},
	}
}

func redisEnv(t *testing.T, rcfg ...redistest.Config) *env {
	rs := redistest.Start(t, rcfg...)
	rc := redistest.Client(t, rs)
	ro := func(c cfg) []redisstreams.Option {
		c = c.withDefaults()
		o := []redisstreams.Option{redisstreams.WithGroup(c.group), redisstreams.WithMaxDeliver(c.maxDeliver),
			redisstreams.WithConcurrency(c.conc), redisstreams.WithBackoff(20*time.Millisecond, 100*time.Millisecond),
			redisstreams.WithBlockTimeout(100 * time.Millisecond), redisstreams.WithClaimTimeout(c.ackWait),
			redisstreams.WithLogger(quiet)}
		if c.dl != nil {
			o = append(o, redisstreams.WithDeadLetterTopic(c.dl))
		}
		return o
	}
	return &env{name: "redis", rs: rs, rc: rc, prefix: rs.KeyPrefix(),
		broker: func(t *testing.T, c cfg) relay.Broker {
			b, err := redisstreams.NewBroker(rc, ro(c)...)
			must(t, err)
			t.Cleanup(func() { closeBounded(t, b.Close) })
			return b
		},
		pub: func(t *testing.T) message.Publisher {
			p, err := redisstreams.NewPublisher(rc, ro(cfg{})...)
			must(t, err)
			t.Cleanup(func() { p.Close() })
			return p
		},
		sub: func(t *testing.T, c cfg) message.Subscriber {
			s, err := redisstreams.NewSubscriber(rc, ro(c)...)
			must(t, err)
			t.Cleanup(func() { closeBounded(t, s.Close) })
			return s
		},
	}
}

// forEach runs f once per backend, each in its own subtest with its own
// server (memory hub, embedded NATS, spawned Redis).
func forEach(t *testing.T, f func(t *testing.T, e *env)) {
	t.Run("memory", func(t *testing.T) { f(t, memEnv(t)) })
	t.Run("nats", func(t *testing.T) { f(t, natsEnv(t)) })
	t.Run("redis", func(t *testing.T) { f(t, redisEnv(t)) })
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// closeBounded calls close and reports (without hanging the test binary
// forever) a Close that fails or does not return within 10s.
func closeBounded(t testing.TB, close func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("Close did not return within 10s")
	}
}

// pubCtx publishes payload on topic with a 10s deadline and fails the test on
// error.
func pubCtx(t testing.TB, b relay.Broker, topic string, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Publish(ctx, topic, payload); err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
}

// collector records payloads delivered to its handler.
type collector struct {
	mu  sync.Mutex
	got [][]byte
}

func newCollector() *collector { return &collector{} }

func (c *collector) handler(p []byte) error {
	c.mu.Lock()
	c.got = append(c.got, append([]byte(nil), p...))
	c.mu.Unlock()
	return nil
}

func (c *collector) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

// waitN polls until at least n payloads were collected, for at most d, and
// reports whether they were.
func (c *collector) waitN(t testing.TB, n int, d time.Duration) bool {
	t.Helper()
	return poll(d, func() bool { return c.n() >= n })
}

// poll calls cond every 10ms until it returns true or d passed, and reports
// whether it returned true.
func poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// waitClosing polls until Publish on b returns relay.ErrClosed, that is until
// a Close or Shutdown running in another goroutine has begun.
func waitClosing(t testing.TB, b relay.Broker, topic string) {
	t.Helper()
	ok := poll(10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return errors.Is(b.Publish(ctx, topic, []byte("probe")), relay.ErrClosed)
	})
	if !ok {
		t.Fatal("Publish did not return relay.ErrClosed within 10s of Close starting")
	}
}

// watchDead subscribes a separate group ("dead-watcher") to dlTopic through the
// Watermill face, so that the dead letters' metadata is visible, and acks
// every message. The subscription ends in t.Cleanup.
func watchDead(t *testing.T, e *env, dlTopic string) <-chan *message.Message {
	t.Helper()
	s := e.sub(t, cfg{group: "dead-watcher"})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := s.Subscribe(ctx, dlTopic)
	must(t, err)
	out := make(chan *message.Message, 1000)
	go func() {
		for m := range ch {
			m.Ack()
			out <- m
		}
	}()
	return out
}

// within runs f and reports whether it returned within d. On timeout f's
// goroutine is left running: the test has failed then.
func within(d time.Duration, f func()) bool {
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}
