package redisstreams_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/redistest"
	"github.com/go-relay/relay/redisstreams"
)

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
	attrs   []slog.Attr
	parent  *logRecorder
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	root := h
	if h.parent != nil {
		root = h.parent
	}
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	root.mu.Lock()
	root.records = append(root.records, r)
	root.mu.Unlock()
	return nil
}

func (h *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	root := h
	if h.parent != nil {
		root = h.parent
	}
	return &logRecorder{parent: root, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *logRecorder) WithGroup(string) slog.Handler { return h }

// find returns the attributes of the first record at level whose message
// contains msg.
func (h *logRecorder) find(level slog.Level, msg string) (map[string]string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.Level != level || !strings.Contains(r.Message, msg) {
			continue
		}
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
		return attrs, true
	}
	return nil, false
}

// An XACK that fails while Redis is down is kept and sent again once the
// server is back: the entry is not delivered a second time.
func TestAcksFailedWhileRedisIsDownAreRetried(t *testing.T) {
	redistest.RequireControl(t)
	e := newEnv(t, redistest.Config{AppendOnly: true})
	topic := e.topic("acks")
	const claim = 300 * time.Millisecond
	b := broker(t, e.rc, fast(redisstreams.WithClaimTimeout(claim))...)
	publish(t, b, topic, "m")
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	releaseOnce := sync.OnceFunc(func() { close(release) })
	// Registered after the broker's Close, so it runs before it: a test
	// that ends early never leaves Close waiting for the handler.
	t.Cleanup(releaseOnce)
	rec := newRecorder()
	if err := b.Subscribe(topic, func(p []byte) error {
		rec.add(p)
		once.Do(func() { close(started); <-release })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not started within 10s")
	}
	if err := e.srv.Kill(); err != nil {
		t.Fatal(err)
	}
	releaseOnce() // the XACK fails: the server is down
	// Longer than the 2 s bound of one XACK, during which go-redis redials.
	time.Sleep(6 * time.Second)
	if err := e.srv.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "entry still pending after the restart", func() bool {
		p, err := e.rc.XPending(context.Background(), topic, redisstreams.DefaultGroup).Result()
		return err == nil && p.Count == 0
	})
	time.Sleep(5 * claim) // a dropped ack would be claimed and delivered again by now
	if n := rec.count("m"); n != 1 {
		t.Errorf("entry delivered %d times; want 1 (its ack must be retried, not dropped)", n)
	}
}

// A Watermill message whose context is done is not stored, and Publish
// returns the context's error.
func TestWatermillPublishWithCanceledContextStoresNothing(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("canceled")
	p, err := redisstreams.NewPublisher(e.rc, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	for _, tc := range []struct {
		name string
		msgs int
	}{{"one message", 1}, {"a batch", 3}} {
		t.Run(tc.name, func(t *testing.T) {
			c, cancel := context.WithCancel(context.Background())
			cancel()
			msgs := make([]*message.Message, tc.msgs)
			for i := range msgs {
				msgs[i] = message.NewMessage("u", []byte("x"))
			}
			msgs[len(msgs)-1].SetContext(c)
			if err := p.Publish(topic, msgs...); !errors.Is(err, context.Canceled) ||
				!strings.HasPrefix(err.Error(), "redisstreams: ") {
				t.Errorf("Publish = %v; want context.Canceled, wrapped", err)
			}
			if n := xlen(t, e.rc, topic); n != 0 {
				t.Errorf("%d entries stored; want none", n)
			}
		})
	}
}

// Shutdown gives up on a handler that does not return once its ctx is done,
// returns the ctx error, and stops refreshing the handler's entry, so that
// another consumer of the group claims it after the claim timeout.
func TestShutdownStopsWaitingForBlockedHandler(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("stuck")
	const claim = 300 * time.Millisecond
	opts := fast(redisstreams.WithClaimTimeout(claim))
	b, err := redisstreams.NewBroker(e.rc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var returned sync.WaitGroup
	returned.Add(1)
	t.Cleanup(func() { close(release); returned.Wait() })
	if err := b.Subscribe(topic, func([]byte) error {
		once.Do(func() { close(started); <-release; returned.Done() })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, "m")
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not started within 10s")
	}

	c, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = b.Shutdown(c)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Shutdown took %v; want about its 200ms ctx", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "redisstreams: ") {
		t.Errorf("Shutdown = %v; want context.DeadlineExceeded, wrapped", err)
	}
	if err := b.Publish(ctx(t), topic, []byte("late")); !errors.Is(err, relay.ErrClosed) {
		t.Errorf("Publish after Shutdown = %v; want ErrClosed", err)
	}

	other := broker(t, e.rc, opts...)
	rec := newRecorder()
	if err := other.Subscribe(topic, func(p []byte) error { rec.add(p); return nil }); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the abandoned entry was not claimed by another consumer",
		func() bool { return rec.count("m") == 1 })
	if err := b.Close(); err != nil {
		t.Errorf("Close after Shutdown: %v", err)
	}
}

// Subscriber.Shutdown with a done ctx returns the ctx error too.
func TestSubscriberShutdownReturnsContextError(t *testing.T) {
	e := newEnv(t)
	s, err := redisstreams.NewSubscriber(e.rc, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Subscribe(context.Background(), e.topic("w")); err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(c); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v; want nil or context.Canceled", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
}

// Close does not wait for the block timeout of the reads in progress: with
// the default 2 s, closing three subscriptions takes well under a second.
func TestCloseWithDefaultBlockTimeoutIsPrompt(t *testing.T) {
	e := newEnv(t)
	b, err := redisstreams.NewBroker(e.rc, redisstreams.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if err := b.Subscribe(e.topic(name), func([]byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "reads not blocked", func() bool {
		list, err := e.rc.ClientList(context.Background()).Result()
		return err == nil && strings.Count(list, "cmd=xreadgroup") >= 3
	})
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("Close took %v; want under 500ms", took)
	}
}

// More subscriptions than the client's pool has connections: the blocking
// reads run on connections of their own, so Publish and Subscribe still get
// one at once.
func TestManySubscriptionsDoNotStarvePublish(t *testing.T) {
	e := newEnv(t)
	opts, err := redis.ParseURL(e.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.PoolSize = 2
	opts.PoolTimeout = time.Second
	rc := redis.NewClient(opts)
	t.Cleanup(func() { _ = rc.Close() })
	b := broker(t, rc, redisstreams.WithLogger(slog.New(slog.DiscardHandler))) // default block timeout
	rec := newRecorder()
	const topics = 6
	for i := range topics {
		start := time.Now()
		if err := b.Subscribe(e.topic(string(rune('a'+i))), func(p []byte) error { rec.add(p); return nil }); err != nil {
			t.Fatalf("Subscribe #%d: %v", i+1, err)
		}
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Errorf("Subscribe #%d took %v", i+1, took)
		}
	}
	for i := range topics {
		c, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := b.Publish(c, e.topic(string(rune('a'+i))), []byte{byte('a' + i)})
		cancel()
		if err != nil {
			t.Errorf("Publish to topic #%d: %v", i+1, err)
		}
	}
	eventually(t, 5*time.Second, "not every message delivered", func() bool { return rec.distinct() == topics })
}

// With a client whose reads share its pool (a ring here), Subscribe warns
// once the subscriptions reach the pool size.
func TestSubscriptionsReachingPoolSizeWarn(t *testing.T) {
	e := newEnv(t)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"one": e.srv.Addr()}, PoolSize: 2,
		DB: redistest.Options(e.srv.Addr()).DB}) // REDIS_URL's database, if set
	t.Cleanup(func() { _ = ring.Close() })
	logs := &logRecorder{}
	b := broker(t, ring, fast(redisstreams.WithLogger(slog.New(logs)))...)
	for _, name := range []string{"a", "b"} {
		if err := b.Subscribe(e.topic(name), func([]byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	attrs, ok := logs.find(slog.LevelWarn, "pool size")
	if !ok {
		t.Fatal("no warning once the subscriptions reached the pool size")
	}
	if attrs["subscriptions"] != "2" || attrs["pool_size"] != "2" {
		t.Errorf("warning attributes %v; want subscriptions=2 pool_size=2", attrs)
	}
}

// Log levels match the other backends: a failed delivery that is retried is
// Debug; a dead letter is Warn with its topic, id, attempts, reason and
// dead-letter topic.
func TestLogLevelsOfFailuresAndDeadLetters(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("logs")
	logs := &logRecorder{}
	b := broker(t, e.rc, fast(redisstreams.WithLogger(slog.New(logs)), redisstreams.WithMaxDeliver(2))...)
	var calls atomic.Int32
	if err := b.Subscribe(topic, func([]byte) error {
		calls.Add(1)
		return errors.New("boom")
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, "m")
	eventually(t, 10*time.Second, "no dead letter", func() bool { return xlen(t, e.rc, topic+".dead") == 1 })
	eventually(t, 5*time.Second, "no dead-letter log", func() bool {
		_, ok := logs.find(slog.LevelWarn, "dead-letter")
		return ok
	})
	if attrs, ok := logs.find(slog.LevelDebug, "handler failed"); !ok {
		t.Error("no Debug record of the failed delivery")
	} else if attrs["attempt"] != "1" || attrs["error"] != "boom" {
		t.Errorf("failed delivery logged with %v", attrs)
	}
	attrs, _ := logs.find(slog.LevelWarn, "dead-letter")
	for _, k := range []string{"topic", "id", "attempts", "reason", "dead_letter_topic"} {
		if attrs[k] == "" {
			t.Errorf("dead-letter record lacks %q: %v", k, attrs)
		}
	}
	if attrs["attempts"] != "2" || attrs["dead_letter_topic"] != topic+".dead" || attrs["topic"] != topic {
		t.Errorf("dead-letter record %v", attrs)
	}
}
