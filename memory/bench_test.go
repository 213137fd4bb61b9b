package memory_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay/memory"
)

// The per-message costs of the memory backend. allocs/op is per message:
// Publish allocates the message (its UUID) and the copy of the payload; a
// delivery to the byte face allocates the handler's copy of the payload.

const benchPayloadSize = 1024

func benchHub(b *testing.B, opts ...memory.HubOption) *memory.Hub {
	b.Helper()
	hub, err := memory.NewHub(opts...)
	if err != nil {
		b.Fatal(err)
	}
	return hub
}

func benchBroker(b *testing.B, hub *memory.Hub, opts ...memory.Option) *memory.Broker {
	b.Helper()
	br, err := memory.NewBroker(append([]memory.Option{memory.WithHub(hub)}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = br.Close() })
	return br
}

// BenchmarkPublish is one Publish call on a topic without a group, which
// keeps every message: the cost of storing one.
func BenchmarkPublish(b *testing.B) {
	hub := benchHub(b, memory.WithCapacity(max(b.N, 1)))
	br := benchBroker(b, hub)
	p := make([]byte, benchPayloadSize)
	ctx := context.Background()
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := br.Publish(ctx, "bench", p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishConsume publishes b.N messages to a running subscription of
// the byte face and waits until every one is handled: the end-to-end cost of
// a message, publish, delivery, handler and acknowledgement.
func BenchmarkPublishConsume(b *testing.B) {
	for _, bc := range []struct {
		name        string
		publishers  int
		concurrency int
	}{
		{name: "publishers=1/concurrency=1", publishers: 1, concurrency: 1},
		{name: "publishers=1/concurrency=8", publishers: 1, concurrency: 8},
		{name: "publishers=16/concurrency=8", publishers: 16, concurrency: 8},
	} {
		b.Run(bc.name, func(b *testing.B) {
			br := benchBroker(b, benchHub(b), memory.WithConcurrency(bc.concurrency))
			var handled atomic.Int64
			done := make(chan struct{})
			n := int64(b.N)
			if err := br.Subscribe("bench", func([]byte) error {
				if handled.Add(1) == n {
					close(done)
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			p := make([]byte, benchPayloadSize)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			b.ResetTimer()
			publishConcurrently(b, bc.publishers, func(ctx context.Context) error {
				return br.Publish(ctx, "bench", p)
			})
			<-done
		})
	}
}

// BenchmarkWatermillPublishConsume is BenchmarkPublishConsume on the
// Watermill face: Publisher, Subscriber, Ack.
func BenchmarkWatermillPublishConsume(b *testing.B) {
	hub := benchHub(b)
	pub, err := memory.NewPublisher(hub)
	if err != nil {
		b.Fatal(err)
	}
	sub, err := memory.NewSubscriber(hub)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sub.Close(); _ = pub.Close() })
	msgs, err := sub.Subscribe(context.Background(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range b.N {
			(<-msgs).Ack()
		}
	}()
	p := make([]byte, benchPayloadSize)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	b.ResetTimer()
	publishConcurrently(b, 16, func(context.Context) error {
		return pub.Publish("bench", message.NewMessage(watermill.NewUUID(), p))
	})
	<-done
}

// publishConcurrently calls publish b.N times from workers goroutines.
func publishConcurrently(b *testing.B, workers int, publish func(context.Context) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	ctx := context.Background()
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := publish(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkWatermillPublishBatch is Watermill's variadic Publish of 100
// messages on a topic without a group, which keeps every message: the cost
// per message of storing a batch. The messages are made in the loop, as a
// caller makes them.
func BenchmarkWatermillPublishBatch(b *testing.B) {
	const size = 100
	hub := benchHub(b, memory.WithCapacity(max(b.N, 1)))
	pub, err := memory.NewPublisher(hub)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pub.Close() })
	p := make([]byte, benchPayloadSize)
	msgs := make([]*message.Message, size)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += size {
		batch := msgs[:min(size, b.N-sent)]
		for i := range batch {
			batch[i] = message.NewMessage(watermill.NewUUID(), p)
		}
		if err := pub.Publish("bench", batch...); err != nil {
			b.Fatal(err)
		}
	}
}
