package redisstreams_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay/internal/testkit"
	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/redisstreams"
)

// env is one redis-server for a test, a client of it, and the test's key
// prefix.
type env struct {
	srv *redistest.Server
	rc  redis.UniversalClient
}

func newEnv(t *testing.T, cfg ...redistest.Config) *env {
	t.Helper()
	srv := redistest.Start(t, cfg...)
	return &env{srv: srv, rc: redistest.Client(t, srv)}
}

// topic returns a topic unique to the test.
func (e *env) topic(name string) string { return e.srv.KeyPrefix() + name }

// fast are options that keep the tests short; later options override them.
func fast(extra ...redisstreams.Option) []redisstreams.Option {
	return append([]redisstreams.Option{
		redisstreams.WithBackoff(20*time.Millisecond, 100*time.Millisecond),
		redisstreams.WithBlockTimeout(100 * time.Millisecond),
		redisstreams.WithClaimTimeout(30 * time.Second),
		redisstreams.WithLogger(slog.New(slog.DiscardHandler)),
	}, extra...)
}

// waitClose bounds a Close that waits for handlers which have returned, or
// were released: a working Close takes about the block timeout, or its
// documented second against a hung server. A Close that waits for ever fails
// the test instead of hanging it.
const waitClose = 15 * time.Second

// broker returns a broker on rc, closed at the end of the test.
func broker(t *testing.T, rc redis.UniversalClient, opts ...redisstreams.Option) *redisstreams.Broker {
	t.Helper()
	b, err := redisstreams.NewBroker(rc, opts...)
	if err != nil {
		t.Fatalf("NewBroker: %v", err)
	}
	t.Cleanup(func() {
		if err := testkit.CloseWithin(t, waitClose, b.Close, "broker Close at cleanup"); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func publish(t *testing.T, b *redisstreams.Broker, topic string, payloads ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, p := range payloads {
		if err := b.Publish(ctx, topic, []byte(p)); err != nil {
			t.Fatalf("Publish(%q, %q): %v", topic, p, err)
		}
	}
}

// eventually polls cond every 10ms until it holds or timeout passes, then
// fails the test with what.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recorder records the deliveries a handler gets.
type recorder struct {
	mu    sync.Mutex
	times map[string][]time.Time
}

func newRecorder() *recorder { return &recorder{times: make(map[string][]time.Time)} }

func (r *recorder) add(payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.times[string(payload)] = append(r.times[string(payload)], time.Now())
}

func (r *recorder) count(payload string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.times[payload])
}

func (r *recorder) deliveries(payload string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.times[payload]...)
}

func (r *recorder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.times)
}

// ctx returns a context that ends with the test, bounded to 10 seconds.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func xlen(t *testing.T, rc redis.UniversalClient, stream string) int64 {
	t.Helper()
	n, err := rc.XLen(ctx(t), stream).Result()
	if err != nil {
		t.Fatalf("XLEN %s: %v", stream, err)
	}
	return n
}

func pendingCount(t *testing.T, rc redis.UniversalClient, stream, group string) int64 {
	t.Helper()
	p, err := rc.XPending(ctx(t), stream, group).Result()
	if err != nil {
		t.Fatalf("XPENDING %s %s: %v", stream, group, err)
	}
	return p.Count
}

func consumers(t *testing.T, rc redis.UniversalClient, stream, group string) []redis.XInfoConsumer {
	t.Helper()
	cs, err := rc.XInfoConsumers(ctx(t), stream, group).Result()
	if err != nil {
		t.Fatalf("XINFO CONSUMERS %s %s: %v", stream, group, err)
	}
	return cs
}

// commandCounter is a go-redis hook that counts the commands of one name.
type commandCounter struct {
	name string
	n    atomic.Int64
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == c.name {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

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
