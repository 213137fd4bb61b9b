package redisstreams_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/redisstreams"
)

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

// One broker on go-redis' default pool (10 connections per CPU) subscribed,
// with the default 2 s block timeout, to 20 topics more than the pool holds,
// then 20 publishes at once on the same client: each Subscribe takes under
// 2 s, every Publish succeeds within 1 s, all 20 are delivered, and Close
// takes under 5 s. It guards against blocking XREADGROUPs holding every pooled
// connection, so that Publish, Subscribe and Close starve on an idle server.
func TestManySubscriptionsOnTheDefaultPoolDoNotStarvePublishOrClose(t *testing.T) {
	e := newEnv(t)
	b, err := redisstreams.NewBroker(e.rc, redisstreams.WithLogger(slog.New(slog.DiscardHandler))) // default block timeout
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = b.Close()
		}
	})
	topics := 10*runtime.GOMAXPROCS(0) + 20
	rec := newRecorder()
	for i := range topics {
		start := time.Now()
		require.NoError(t, b.Subscribe(e.topic(fmt.Sprintf("t%d", i)), func(p []byte) error { rec.add(p); return nil }))
		require.Less(t, time.Since(start), 2*time.Second, "Subscribe of topic #%d of %d", i+1, topics)
	}
	// Not synchronisation: time for the subscriptions to enter their
	// blocking reads, the state in which they could starve the pool.
	time.Sleep(300 * time.Millisecond)
	var failed, slow atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			start := time.Now()
			if err := b.Publish(c, e.topic(fmt.Sprintf("t%d", i)), fmt.Appendf(nil, "m%d", i)); err != nil {
				failed.Add(1)
				t.Logf("Publish: %v", err)
			} else if time.Since(start) > time.Second {
				slow.Add(1)
			}
		})
	}
	wg.Wait()
	assert.Zero(t, failed.Load(), "publishes failed within 3 s with %d subscribed topics", topics)
	assert.Zero(t, slow.Load(), "publishes took over 1 s with %d subscribed topics", topics)
	eventually(t, 15*time.Second, "not every message delivered", func() bool { return rec.distinct() == 20-int(failed.Load()) })
	start := time.Now()
	closed = true
	require.NoError(t, b.Close())
	assert.Less(t, time.Since(start), 5*time.Second, "Close of a broker with %d subscriptions", topics)
}
