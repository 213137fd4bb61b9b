package pubsubtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit"
)

// middlewareCase is one combination of Watermill middleware and relay's own
// retries, with the numbers the README states for it: how often the handler
// is called and where the failing message ends.
type middlewareCase struct {
	name string
	// maxDeliver overrides DefaultConfig's MaxDeliver (3) when not 0.
	maxDeliver int
	// middleware returns the router middleware after relay.NackReason, which
	// is always outermost; poison is the poison-queue middleware's publisher
	// and topic.
	middleware func(poison message.Publisher, poisonTopic string) []message.HandlerMiddleware
	// err is what the handler returns for the failing message.
	err error
	// ok is the number of messages published besides the failing one, which
	// the handler accepts.
	ok int
	// calls is the number of handler calls for the failing message; dead and
	// poisoned the number of messages on the dead-letter topic and on the
	// poison queue.
	calls, dead, poisoned int
	// check, when set, checks the times of the handler calls of the accepted
	// messages.
	check func(okCalls []time.Time) error
}

// throttleEvery is the interval of the Throttle case: 20 handler calls per
// second.
const throttleEvery = 50 * time.Millisecond

// middlewareCases are the combinations [TestWatermill] runs. DefaultConfig's
// MaxDeliver is 3 unless a case says otherwise.
var middlewareCases = []middlewareCase{
	{
		name: "middleware.Retry{MaxRetries: 2} over MaxDeliver 3 calls the handler 9 times, then dead-letters once",
		middleware: func(message.Publisher, string) []message.HandlerMiddleware {
			return []message.HandlerMiddleware{middleware.Retry{MaxRetries: 2}.Middleware}
		},
		err: errInduced, calls: 9, dead: 1,
	},
	{
		name:       "middleware.Retry{MaxRetries: 2} over MaxDeliver 1 calls the handler 3 times, then dead-letters once",
		maxDeliver: 1,
		middleware: func(message.Publisher, string) []message.HandlerMiddleware {
			return []message.HandlerMiddleware{middleware.Retry{MaxRetries: 2}.Middleware}
		},
		err: errInduced, calls: 3, dead: 1,
	},
	{
		name: "middleware.Retry retries a relay.Permanent error 2 times, which then dead-letters after one delivery",
		middleware: func(message.Publisher, string) []message.HandlerMiddleware {
			return []message.HandlerMiddleware{middleware.Retry{MaxRetries: 2}.Middleware}
		},
		err: relay.Permanent(errInduced), calls: 3, dead: 1,
	},
	{
		name: "middleware.Retry with a ShouldRetry refusing relay.ErrPermanent calls the handler once, then dead-letters",
		middleware: func(message.Publisher, string) []message.HandlerMiddleware {
			return []message.HandlerMiddleware{middleware.Retry{MaxRetries: 2, ShouldRetry: func(p middleware.RetryParams) bool {
				return !errors.Is(p.Err, relay.ErrPermanent)
			}}.Middleware}
		},
		err: relay.Permanent(errInduced), calls: 1, dead: 1,
	},
	{
		name: "middleware.PoisonQueue takes the message after one call, acks it, and the dead-letter topic stays empty",
		middleware: func(pub message.Publisher, topic string) []message.HandlerMiddleware {
			return []message.HandlerMiddleware{mustPoisonQueue(pub, topic)}
		},
		err: errInduced, calls: 1, poisoned: 1,
	},
	{
		name: "middleware.Retry{MaxRetries: 2} inside middleware.PoisonQueue calls the handler 3 times, then poisons",
		middleware: func(pub message.Publisher, topic string) []message.HandlerMiddleware {
			return []message.HandlerMiddleware{mustPoisonQueue(pub, topic), middleware.Retry{MaxRetries: 2}.Middleware}
		},
		err: errInduced, calls: 3, poisoned: 1,
	},
	{
		name: "middleware.PoisonQueueWithFilter taking only relay.ErrPermanent leaves other errors to relay's retries",
		middleware: func(pub message.Publisher, topic string) []message.HandlerMiddleware {
			m, err := middleware.PoisonQueueWithFilter(pub, topic, func(err error) bool { return errors.Is(err, relay.ErrPermanent) })
			if err != nil {
				panic(fmt.Sprintf("pubsubtest: middleware.PoisonQueueWithFilter(%q): %v", topic, err))
			}
			return []message.HandlerMiddleware{m}
		},
		err: errInduced, calls: 3, dead: 1,
	},
	{
		name: "middleware.Throttle spaces the handler calls and changes no count: MaxDeliver calls, one dead letter",
		middleware: func(message.Publisher, string) []message.HandlerMiddleware {
			return []message.HandlerMiddleware{middleware.NewThrottle(1, throttleEvery).Middleware}
		},
		err: errInduced, ok: 6, calls: 3, dead: 1,
		check: func(calls []time.Time) error {
			// Throttle's ticker may hold one tick, so n calls span at least
			// n-2 intervals.
			if span, least := calls[len(calls)-1].Sub(calls[0]), time.Duration(len(calls)-2)*throttleEvery; span < least*9/10 {
				return fmt.Errorf("%d throttled calls spanned %v, want at least %v", len(calls), span, least)
			}
			return nil
		},
	},
}

// mustPoisonQueue returns Watermill's poison-queue middleware, which refuses
// only an empty topic.
func mustPoisonQueue(pub message.Publisher, topic string) message.HandlerMiddleware {
	m, err := middleware.PoisonQueue(pub, topic)
	if err != nil {
		panic(fmt.Sprintf("pubsubtest: middleware.PoisonQueue(%q): %v", topic, err))
	}
	return m
}

// testMiddleware runs each of middlewareCases as a sub-test: a Watermill
// router with relay.NackReason outermost and the case's middleware consumes a
// topic; one failing message (and the case's accepted ones) is published; the
// handler calls and the messages on the dead-letter topic and on the poison
// queue are counted once nothing more arrives.
func (s *wmSuite) testMiddleware(t *testing.T) {
	for _, c := range middlewareCases {
		t.Run(c.name, func(t *testing.T) { s.testMiddlewareCase(t, c) })
	}
}

func (s *wmSuite) testMiddlewareCase(t *testing.T, c middlewareCase) {
	cfg := DefaultConfig()
	if c.maxDeliver != 0 {
		cfg.MaxDeliver = c.maxDeliver
	}
	topic := NewTopic(t)
	poisonTopic := topic + ".poison"
	dead := newCounter(t, subscribeWM(t, s.subscriber(t, DefaultConfig()), topic+".dead"))
	poisoned := newCounter(t, subscribeWM(t, s.subscriber(t, DefaultConfig()), poisonTopic))

	var mu sync.Mutex
	var failCalls int
	var okCalls []time.Time
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: waitShort}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	router.AddMiddleware(relay.NackReason)
	router.AddMiddleware(c.middleware(s.publisher(t, DefaultConfig()), poisonTopic)...)
	router.AddConsumerHandler("middleware", topic, s.subscriber(t, cfg), func(msg *message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if string(msg.Payload) == "fail" {
			failCalls++
			return c.err
		}
		okCalls = append(okCalls, time.Now())
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- router.Run(context.Background()) }()
	t.Cleanup(func() {
		_ = router.Close() // bounded by its CloseTimeout
		if err := testkit.Receive(t, done, waitShort, "router Run's return after Close"); err != nil {
			t.Errorf("router.Run: %v", err)
		}
	})
	testkit.Closed(t, router.Running(), waitShort, "the router's Running channel")

	pub := s.publisher(t, DefaultConfig())
	publishWM(t, pub, topic, message.NewMessage(watermill.NewUUID(), []byte("fail")))
	for i := range c.ok {
		publishWM(t, pub, topic, message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, "ok %d", i)))
	}
	eventually(t, waitLong, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return dead.count() >= c.dead && poisoned.count() >= c.poisoned && len(okCalls) >= c.ok &&
			(c.dead+c.poisoned > 0 || failCalls >= c.calls)
	}, "the failing message did not reach its end: want %d dead letters and %d on the poison queue", c.dead, c.poisoned)
	quiet(settleWindow(cfg))

	mu.Lock()
	defer mu.Unlock()
	if failCalls != c.calls {
		t.Errorf("the handler was called %d times for the failing message, want %d", failCalls, c.calls)
	}
	if got := dead.count(); got != c.dead {
		t.Errorf("%d messages on the dead-letter topic, want %d", got, c.dead)
	}
	if got := poisoned.count(); got != c.poisoned {
		t.Errorf("%d messages on the poison queue, want %d", got, c.poisoned)
	}
	if len(okCalls) != c.ok {
		t.Errorf("%d handler calls for the %d accepted messages, want one each", len(okCalls), c.ok)
	}
	if c.check != nil && len(okCalls) >= 2 {
		if err := c.check(okCalls); err != nil {
			t.Error(err)
		}
	}
}

// counter acks and counts the messages of a subscription.
type counter struct {
	mu sync.Mutex
	n  int
}

func newCounter(t *testing.T, ch <-chan *message.Message) *counter {
	c := &counter{}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for m := range ch { // ends when the subscriber closes at cleanup
			m.Ack()
			c.mu.Lock()
			c.n++
			c.mu.Unlock()
		}
	}()
	// The subscription's channel closes as t's context ends, before the
	// cleanups run.
	t.Cleanup(func() { testkit.Closed(t, stopped, waitShort, "the counted subscription's channel") })
	return c
}

func (c *counter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
