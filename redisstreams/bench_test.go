package redisstreams_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay/internal/testkit"
	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/redisstreams"
)

// The per-message costs of the Redis Streams backend against a
// redis-server on loopback, each beside its floor: go-redis alone doing the
// wire work relay's format requires (the Raw benchmarks), so that the
// difference is relay's own code. Run them side by side:
//
//	go test -run '^$' -bench 'Benchmark(Raw)?(Publish|Latency)$' -count 5 ./redisstreams

const benchPayloadSize = 1024

// benchClient is a client of s for one benchmark, closed with it.
func benchClient(b *testing.B, s *redistest.Server) *redis.Client {
	b.Helper()
	c := redis.NewClient(redistest.Options(s.Addr()))
	b.Cleanup(func() { c.Close() })
	return c
}

// benchStream is a stream key of its own for b, deleted with it.
func benchStream(b *testing.B, s *redistest.Server, c *redis.Client, name string) string {
	b.Helper()
	key := fmt.Sprintf("%sbench.%s.%s", s.KeyPrefix(), name, watermill.NewShortUUID())
	b.Cleanup(func() { c.Del(context.Background(), key) })
	return key
}

// rawEntry is the XADD relay's encode and engine write for a message without
// metadata: a fresh UUID, an empty metadata field and the payload, in that
// order, MaxLen from WithMaxLen (0 by default: no trimming).
func rawEntry(stream string, p []byte) *redis.XAddArgs {
	return &redis.XAddArgs{Stream: stream, Approx: true,
		Values: []any{"_watermill_message_uuid", watermill.NewUUID(), "metadata", []byte{}, "payload", p}}
}

// BenchmarkPublish is Broker.Publish, waiting for each XADD's answer, from
// 1 and from 16 goroutines.
func BenchmarkPublish(b *testing.B) {
	for _, publishers := range []int{1, 16} {
		b.Run(fmt.Sprintf("publishers=%d", publishers), func(b *testing.B) {
			s := redistest.Start(b)
			c := benchClient(b, s)
			topic := benchStream(b, s, c, "pub") // deleted after Close
			br, err := redisstreams.NewBroker(c)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = br.Close() })
			p := make([]byte, benchPayloadSize)
			if err := br.Publish(context.Background(), topic, p); err != nil { // CONFIG GET before the timer starts
				b.Fatal(err)
			}
			b.SetBytes(int64(len(p)))
			bench(b, publishers, func() error { return br.Publish(context.Background(), topic, p) })
		})
	}
}

// BenchmarkRawPublish is the floor of BenchmarkPublish: go-redis' XADD of
// the entry relay writes (rawEntry), from one goroutine and from 16 on a
// client whose pool is shared (no pipelining between them).
func BenchmarkRawPublish(b *testing.B) {
	for _, publishers := range []int{1, 16} {
		b.Run(fmt.Sprintf("publishers=%d/fields=relay", publishers), func(b *testing.B) {
			s := redistest.Start(b)
			c := benchClient(b, s)
			topic := benchStream(b, s, c, "raw")
			p := make([]byte, benchPayloadSize)
			b.SetBytes(int64(len(p)))
			bench(b, publishers, func() error { return c.XAdd(context.Background(), rawEntry(topic, p)).Err() })
		})
	}
}

// benchBrokers returns a new topic on a new redis-server and a publishing
// and a subscribing broker, each on a client of its own, closed at cleanup
// before the topic's stream is deleted.
func benchBrokers(b *testing.B, name string) (topic string, pub, sub *redisstreams.Broker) {
	b.Helper()
	s := redistest.Start(b)
	pc, sc := benchClient(b, s), benchClient(b, s)
	topic = benchStream(b, s, pc, name) // deleted after Close
	for _, br := range []struct {
		b  **redisstreams.Broker
		rc *redis.Client
	}{{&pub, pc}, {&sub, sc}} {
		var err error
		if *br.b, err = redisstreams.NewBroker(br.rc); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = (*br.b).Close() })
	}
	return topic, pub, sub
}

// BenchmarkPublishConsume publishes b.N messages from 16 goroutines to a
// running subscription of the byte face and waits until every one is
// handled.
func BenchmarkPublishConsume(b *testing.B) {
	topic, pub, sub := benchBrokers(b, "e2e")
	handled, done := counter(b.N)
	if err := sub.Subscribe(topic, func([]byte) error { handled(); return nil }); err != nil {
		b.Fatal(err)
	}
	p := make([]byte, benchPayloadSize)
	b.SetBytes(int64(len(p)))
	bench(b, 16, func() error { return pub.Publish(context.Background(), topic, p) })
	wait(b, done)
}

// BenchmarkRawPublishConsume is the floor of BenchmarkPublishConsume: XADD
// of relay's entry from 16 goroutines, read by rawConsume.
func BenchmarkRawPublishConsume(b *testing.B) {
	s := redistest.Start(b)
	pc, sc := benchClient(b, s), benchClient(b, s)
	topic := benchStream(b, s, pc, "rawe2e")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })
	if err := sc.XGroupCreateMkStream(ctx, topic, "raw", "0").Err(); err != nil {
		b.Fatal(err)
	}
	handled, done := counter(b.N)
	wg.Go(func() { rawConsume(ctx, b, sc, topic, func([]byte) { handled() }) })
	p := make([]byte, benchPayloadSize)
	b.SetBytes(int64(len(p)))
	bench(b, 16, func() error { return pc.XAdd(context.Background(), rawEntry(topic, p)).Err() })
	wait(b, done)
}

// counter returns a function to call once per handled message and a
// channel closed at the n-th call.
func counter(n int) (func(), <-chan struct{}) {
	var handled atomic.Int64
	done := make(chan struct{})
	return func() {
		if handled.Add(1) == int64(n) {
			close(done)
		}
	}, done
}

// wait waits for done, a minute at most.
func wait(b *testing.B, done <-chan struct{}) {
	b.Helper()
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatal("not every message handled within a minute")
	}
}

// BenchmarkLatency is publish → handler at a low rate (testkit.Latency: one
// message a millisecond from one goroutine), relay's byte face against
// go-redis doing the same wire work: XADD of relay's entry, and one
// goroutine reading XREADGROUP (COUNT 500, BLOCK 2 s, relay's default) that
// calls the handler inline and then acks what it read with one XACK. The
// metrics p50-µs and p99-µs are what to compare.
func BenchmarkLatency(b *testing.B) {
	b.Run("relay", func(b *testing.B) {
		topic, pub, sub := benchBrokers(b, "lat")
		testkit.Latency(b, benchPayloadSize, func(handle func([]byte)) error {
			return sub.Subscribe(topic, func(p []byte) error { handle(p); return nil })
		}, func(ctx context.Context, p []byte) error { return pub.Publish(ctx, topic, p) })
	})
	b.Run("raw", func(b *testing.B) {
		s := redistest.Start(b)
		pc, sc := benchClient(b, s), benchClient(b, s)
		topic := benchStream(b, s, pc, "rawlat")
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		b.Cleanup(func() { cancel(); wg.Wait() })
		testkit.Latency(b, benchPayloadSize, func(handle func([]byte)) error {
			if err := sc.XGroupCreateMkStream(ctx, topic, "raw", "0").Err(); err != nil {
				return err
			}
			wg.Go(func() { rawConsume(ctx, b, sc, topic, handle) })
			return nil
		}, func(ctx context.Context, p []byte) error { return pc.XAdd(ctx, rawEntry(topic, p)).Err() })
	})
	// raw-workers is raw with the hand-off the contract's concurrency
	// needs: the reader passes each entry to one of DefaultConcurrency
	// worker goroutines, as relay does, instead of running the handler
	// itself. Its p50 beside raw's is what that hand-off costs.
	b.Run("raw-workers", func(b *testing.B) {
		s := redistest.Start(b)
		pc, sc := benchClient(b, s), benchClient(b, s)
		topic := benchStream(b, s, pc, "rawlatw")
		ctx, cancel := context.WithCancel(context.Background())
		var reader, workers sync.WaitGroup
		queue := make(chan []byte, redisstreams.DefaultConcurrency+redisstreams.DefaultPrefetch)
		b.Cleanup(func() { cancel(); reader.Wait(); close(queue); workers.Wait() })
		testkit.Latency(b, benchPayloadSize, func(handle func([]byte)) error {
			if err := sc.XGroupCreateMkStream(ctx, topic, "raw", "0").Err(); err != nil {
				return err
			}
			for range redisstreams.DefaultConcurrency {
				workers.Go(func() {
					for p := range queue {
						handle(p)
					}
				})
			}
			reader.Go(func() { rawConsume(ctx, b, sc, topic, func(p []byte) { queue <- p }) })
			return nil
		}, func(ctx context.Context, p []byte) error { return pc.XAdd(ctx, rawEntry(topic, p)).Err() })
	})
}

// rawConsume reads topic as group "raw" until ctx is done, calling handle
// inline and acking each read with one XACK.
func rawConsume(ctx context.Context, b *testing.B, c *redis.Client, topic string, handle func([]byte)) {
	ids := make([]string, 0, 500)
	for ctx.Err() == nil {
		streams, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "raw", Consumer: "raw",
			Streams: []string{topic, ">"}, Count: 500, Block: redisstreams.DefaultBlockTimeout}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				b.Error(err)
			}
			return
		}
		ids = ids[:0]
		for _, m := range streams[0].Messages {
			p, _ := m.Values["payload"].(string)
			handle([]byte(p))
			ids = append(ids, m.ID)
		}
		if err := c.XAck(ctx, topic, "raw", ids...).Err(); err != nil && ctx.Err() == nil {
			b.Error(err)
			return
		}
	}
}
