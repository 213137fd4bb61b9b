package natsjs_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay/internal/testkit"
	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

// The per-message costs of the JetStream backend against the embedded server.
// The server runs in the test process, so allocs/op and instruction counts
// include its share: compare them with the Raw benchmarks, which do the same
// work with nats.go alone, rather than reading them as relay's own.

const benchPayloadSize = 1024

func benchJS(b *testing.B, s *natstest.Server) (*nats.Conn, jetstream.JetStream) {
	b.Helper()
	nc := natstest.Connect(b, s)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	return nc, js
}

func benchTopic(b *testing.B, name string) string {
	b.Helper()
	return natstest.Topic(b, name)
}

// benchBrokers returns a publishing and a subscribing broker, each on a
// connection of its own to one new embedded server, closed at cleanup.
func benchBrokers(b *testing.B) (pub, sub *natsjs.Broker) {
	b.Helper()
	s := natstest.Start(b)
	for _, br := range []**natsjs.Broker{&pub, &sub} {
		_, js := benchJS(b, s)
		var err error
		if *br, err = natsjs.NewBroker(js); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = (*br).Close() })
	}
	return pub, sub
}

// publishN runs b.N calls of publish from publishers goroutines.
func publishN(b *testing.B, publishers int, publish func(ctx context.Context) error) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var next atomic.Int64
	n := int64(b.N)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range publishers {
		wg.Go(func() {
			for next.Add(1) <= n {
				if err := publish(ctx); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPublish is Broker.Publish, waiting for each PubAck, from 1 and
// from 16 goroutines.
func BenchmarkPublish(b *testing.B) {
	for _, publishers := range []int{1, 16} {
		b.Run(map[int]string{1: "publishers=1", 16: "publishers=16"}[publishers], func(b *testing.B) {
			s := natstest.Start(b)
			_, js := benchJS(b, s)
			br, err := natsjs.NewBroker(js)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = br.Close() })
			topic := benchTopic(b, "pub")
			p := make([]byte, benchPayloadSize)
			if err := br.Publish(context.Background(), topic, p); err != nil { // the stream exists before the timer starts
				b.Fatal(err)
			}
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			b.ResetTimer()
			publishN(b, publishers, func(ctx context.Context) error { return br.Publish(ctx, topic, p) })
		})
	}
}

// BenchmarkPublishConsume publishes b.N messages from 16 goroutines to a
// running subscription of the byte face and waits until every one is
// handled and the consumer has nothing left to acknowledge.
func BenchmarkPublishConsume(b *testing.B) {
	pub, sub := benchBrokers(b)
	topic := benchTopic(b, "e2e")
	var handled atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	if err := sub.Subscribe(topic, func([]byte) error {
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
	publishN(b, 16, func(ctx context.Context) error { return pub.Publish(ctx, topic, p) })
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("handled %d of %d", handled.Load(), n)
	}
}

// BenchmarkWatermillPublishConsume is BenchmarkPublishConsume on the
// Watermill face: Publisher, Subscriber, Ack.
func BenchmarkWatermillPublishConsume(b *testing.B) {
	s := natstest.Start(b)
	_, pubJS := benchJS(b, s)
	_, subJS := benchJS(b, s)
	pub, err := natsjs.NewPublisher(pubJS)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pub.Close() })
	sub, err := natsjs.NewSubscriber(subJS)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sub.Close() })
	topic := benchTopic(b, "wm")
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		b.Fatal(err)
	}
	n := b.N
	done := make(chan struct{})
	go func() {
		defer close(done)
		for got := 0; got < n; got++ {
			select {
			case m := <-ch:
				m.Ack()
			case <-time.After(5 * time.Minute):
				return
			}
		}
	}()
	p := make([]byte, benchPayloadSize)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	b.ResetTimer()
	publishN(b, 16, func(context.Context) error {
		return pub.Publish(topic, message.NewMessage(watermill.NewUUID(), p))
	})
	<-done
}

// BenchmarkWatermillRouter is BenchmarkWatermillPublishConsume through a
// Watermill Router with one handler that does nothing but count.
func BenchmarkWatermillRouter(b *testing.B) {
	s := natstest.Start(b)
	_, pubJS := benchJS(b, s)
	_, subJS := benchJS(b, s)
	pub, err := natsjs.NewPublisher(pubJS)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pub.Close() })
	sub, err := natsjs.NewSubscriber(subJS)
	if err != nil {
		b.Fatal(err)
	}
	topic := benchTopic(b, "router")
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	var handled atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	r.AddConsumerHandler("bench", topic, sub, func(*message.Message) error {
		if handled.Add(1) == n {
			close(done)
		}
		return nil
	})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = r.Run(context.Background()) // its error is the handler's, seen as a missing message
	}()
	b.Cleanup(func() {
		_ = r.Close() // closes the Subscriber
		<-stopped
	})
	select {
	case <-r.Running():
	case <-time.After(time.Minute):
		b.Fatal("router not running after a minute")
	}
	p := make([]byte, benchPayloadSize)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	b.ResetTimer()
	publishN(b, 16, func(context.Context) error {
		return pub.Publish(topic, message.NewMessage(watermill.NewUUID(), p))
	})
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("handled %d of %d", handled.Load(), n)
	}
}

// rawMsg is the message the Raw benchmarks publish: with the two headers
// relay writes (the UUID and Nats-Msg-Id, which the wire format requires),
// the UUID alone (no de-duplication by the stream), or none.
func rawMsg(topic string, p []byte, headers int) *nats.Msg {
	m := &nats.Msg{Subject: topic, Data: p}
	switch id := watermill.NewUUID(); headers {
	case 2:
		m.Header = nats.Header{natsjs.UUIDHeader: {id}, nats.MsgIdHdr: {id}}
	case 1:
		m.Header = nats.Header{natsjs.UUIDHeader: {id}}
	}
	return m
}

// rawStream creates the stream of topic as relay would, file storage.
func rawStream(b *testing.B, js jetstream.JetStream, topic string) jetstream.Stream {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: natsjs.StreamName(topic), Subjects: []string{topic}, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	return st
}

// BenchmarkRawPublishConsume is the floor of BenchmarkPublishConsume:
// nats.go's synchronous PublishMsg from 16 goroutines to a durable consumer
// read with Consume, each message acked (Ack, no confirmation) by the
// callback, with relay's two headers, with the UUID alone (as watermill-nats
// publishes: no de-duplication by the stream) and without any, to show what
// the headers the wire format requires cost end to end; and with relay's
// headers and a pool of DefaultConcurrency workers that the callback hands
// each message to, to show what that hand-off costs.
func BenchmarkRawPublishConsume(b *testing.B) {
	for _, bc := range []struct {
		name    string
		headers int
		workers int // 0: the callback handles and acks inline
	}{
		{"headers=relay", 2, 0},
		{"headers=relay/workers", 2, natsjs.DefaultConcurrency},
		{"headers=uuid", 1, 0},
		{"headers=none", 0, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := natstest.Start(b)
			_, pubJS := benchJS(b, s)
			_, subJS := benchJS(b, s)
			topic := benchTopic(b, "rawe2e")
			st := rawStream(b, pubJS, topic)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
				b.Fatal(err)
			}
			cons, err := subJS.Consumer(ctx, natsjs.StreamName(topic), "raw")
			if err != nil {
				b.Fatal(err)
			}
			var handled atomic.Int64
			done := make(chan struct{})
			n := int64(b.N)
			handle := func(m jetstream.Msg) {
				_ = m.Ack() // a lost ack is redelivered
				if handled.Add(1) == n {
					close(done)
				}
			}
			consume := handle
			if bc.workers > 0 {
				// The hand-off the contract's concurrency needs: the
				// callback passes each message to one of the workers, as
				// relay's fetch loop does, instead of handling it itself.
				queue := make(chan jetstream.Msg, bc.workers+natsjs.DefaultPrefetch)
				stop := make(chan struct{})
				var workers sync.WaitGroup
				for range bc.workers {
					workers.Go(func() {
						for {
							select {
							case m := <-queue:
								handle(m)
							case <-stop:
								return
							}
						}
					})
				}
				b.Cleanup(func() { close(stop); workers.Wait() })
				consume = func(m jetstream.Msg) {
					select {
					case queue <- m:
					case <-stop:
					}
				}
			}
			cc, err := cons.Consume(consume)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(cc.Stop)
			p := make([]byte, benchPayloadSize)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			b.ResetTimer()
			publishN(b, 16, func(ctx context.Context) error {
				_, err := pubJS.PublishMsg(ctx, rawMsg(topic, p, bc.headers))
				return err
			})
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("handled %d of %d", handled.Load(), n)
			}
		})
	}
}

// BenchmarkRawPublish is the floor of BenchmarkPublish: nats.go's
// synchronous PublishMsg, waiting for each PubAck, of a message with the
// same two headers relay writes (the UUID and Nats-Msg-Id, which the wire
// format requires) and, to show what those cost, of one with the UUID header
// alone (no de-duplication by the stream) and of a bare one. The
// relay-async case sends relay's message as relay does, PublishMsgAsync and
// a wait for its future, so that the difference between the two ways of
// waiting for a PubAck shows apart from relay's own code.
func BenchmarkRawPublish(b *testing.B) {
	for _, bc := range []struct {
		name       string
		publishers int
		headers    int  // 2: UUID and Nats-Msg-Id, 1: UUID, 0: none
		async      bool // PublishMsgAsync and a wait for its future, as relay publishes
	}{
		{"publishers=1/headers=relay", 1, 2, false},
		{"publishers=16/headers=relay", 16, 2, false},
		{"publishers=16/headers=relay-async", 16, 2, true},
		{"publishers=16/headers=uuid", 16, 1, false},
		{"publishers=16/headers=none", 16, 0, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := natstest.Start(b)
			_, js := benchJS(b, s)
			topic := benchTopic(b, "raw")
			rawStream(b, js, topic)
			p := make([]byte, benchPayloadSize)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			b.ResetTimer()
			publishN(b, bc.publishers, func(ctx context.Context) error {
				if !bc.async {
					_, err := js.PublishMsg(ctx, rawMsg(topic, p, bc.headers))
					return err
				}
				f, err := js.PublishMsgAsync(rawMsg(topic, p, bc.headers))
				if err != nil {
					return err
				}
				select {
				case <-f.Ok():
					return nil
				case err := <-f.Err():
					return err
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		})
	}
}

// BenchmarkLatency is publish → handler at a low rate (testkit.Latency: one
// message a millisecond from one goroutine), relay's byte face against
// nats.go doing the same wire work: PublishMsg of a message with relay's
// two headers, and Consume on a durable consumer whose callback handles and
// acks. The metrics p50-µs and p99-µs are what to compare; run the two side
// by side:
//
//	go test -run '^$' -bench BenchmarkLatency -benchtime 2000x -count 5 ./natsjs
func BenchmarkLatency(b *testing.B) {
	b.Run("relay", func(b *testing.B) {
		pub, sub := benchBrokers(b)
		topic := benchTopic(b, "lat")
		testkit.Latency(b, benchPayloadSize, func(handle func([]byte)) error {
			return sub.Subscribe(topic, func(p []byte) error { handle(p); return nil })
		}, func(ctx context.Context, p []byte) error { return pub.Publish(ctx, topic, p) })
	})
	b.Run("raw", func(b *testing.B) {
		s := natstest.Start(b)
		_, pubJS := benchJS(b, s)
		_, subJS := benchJS(b, s)
		topic := benchTopic(b, "rawlat")
		st := rawStream(b, pubJS, topic)
		testkit.Latency(b, benchPayloadSize, func(handle func([]byte)) error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
				return err
			}
			cons, err := subJS.Consumer(ctx, natsjs.StreamName(topic), "raw")
			if err != nil {
				return err
			}
			cc, err := cons.Consume(func(m jetstream.Msg) {
				handle(m.Data())
				_ = m.Ack() // a lost ack is redelivered
			})
			if err != nil {
				return err
			}
			b.Cleanup(cc.Stop)
			return nil
		}, func(ctx context.Context, p []byte) error {
			_, err := pubJS.PublishMsg(ctx, rawMsg(topic, p, 2))
			return err
		})
	})
}
