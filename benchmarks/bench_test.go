package benchmarks_test

import (
	"context"
	"flag"
	"testing"

	"github.com/go-relay/relay/benchmarks"
)

var benchPayload = flag.Int("bench.payload", 1024, "payload size of the Benchmark functions, in bytes")

// open opens a session of impl for b, closed at the end of b.
func open(b *testing.B, impl benchmarks.Impl, retain int) benchmarks.Session {
	b.Helper()
	switch impl.System {
	case "redis":
		server(b, "REDIS", env.Redis)
	case "nats":
		server(b, "NATS", env.NATS)
	}
	sess, err := impl.Open(context.Background(), env, benchmarks.SessionConfig{Topic: benchmarks.NewTopic(impl, "bench"), Retain: retain})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := sess.Close(); err != nil {
			b.Error(err)
		}
	})
	return sess
}

func payload() []byte {
	p := make([]byte, *benchPayload)
	for i := range p {
		p[i] = byte(i)
	}
	return p
}

// BenchmarkPublish is the cost of one Publish call, one message, from one
// goroutine: ns/op is the round trip, allocs/op the allocations per message
// (for NATS including the embedded server's).
func BenchmarkPublish(b *testing.B) {
	for _, impl := range benchmarks.Impls() {
		b.Run(impl.Name(), func(b *testing.B) {
			sess := open(b, impl, b.N)
			p := payload()
			ctx := context.Background()
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := sess.Publish(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEndToEnd is the cost per message of publishing b.N messages from
// 16 goroutines to a running consumer group until all are handled and acked.
func BenchmarkEndToEnd(b *testing.B) {
	for _, impl := range benchmarks.Impls() {
		b.Run(impl.Name(), func(b *testing.B) {
			sess := open(b, impl, 0)
			p := payload()
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			b.ResetTimer()
			if _, err := benchmarks.EndToEnd(context.Background(), sess, p, b.N, sess.Consume); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkPublishBatch is the cost per message of publishing b.N messages
// 100 per call (Watermill's variadic Publish, a Redis pipeline,
// PublishAsync), on the sessions that publish batches.
func BenchmarkPublishBatch(b *testing.B) {
	for _, impl := range benchmarks.Impls() {
		b.Run(impl.Name(), func(b *testing.B) {
			sess := open(b, impl, b.N)
			bp, ok := sess.(benchmarks.BatchPublisher)
			if !ok {
				b.Skip("no batch publish on this face")
			}
			p := payload()
			batch := make([][]byte, 100)
			for i := range batch {
				batch[i] = p
			}
			ctx := context.Background()
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			b.ResetTimer()
			for sent := 0; sent < b.N; sent += len(batch) {
				if err := bp.PublishBatch(ctx, batch[:min(len(batch), b.N-sent)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
