package benchmarks_test

import (
	"bytes"
	"context"
	"maps"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay/benchmarks"
	"github.com/go-relay/relay/natsjs"
	"github.com/go-relay/relay/redisstreams"
)

const interopWait = 15 * time.Second

// sample returns a message with metadata and a binary payload (zero bytes,
// invalid UTF-8), the things a codec is most likely to mangle.
func sample() *message.Message {
	msg := message.NewMessage(watermill.NewUUID(), []byte("interop\x00\xff\xfe payload"))
	msg.Metadata.Set("trace_id", "4bf92f3577b34da6")
	msg.Metadata.Set("tenant", "acme")
	return msg
}

// receive returns the first message of sub on topic, acked.
func receive(t *testing.T, sub message.Subscriber, topic string) *message.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), interopWait)
	defer cancel()
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	select {
	case msg, ok := <-ch:
		if !ok {
			t.Fatal("channel closed before a message came")
		}
		msg.Ack()
		return msg
	case <-ctx.Done():
		t.Fatalf("no message on %q within %v", topic, interopWait)
	}
	return nil
}

// receiveBytes returns the first payload that subscribe delivers.
func receiveBytes(t *testing.T, subscribe func(func([]byte) error) error) []byte {
	t.Helper()
	got := make(chan []byte, 1)
	if err := subscribe(func(p []byte) error {
		select {
		case got <- bytes.Clone(p):
		default:
		}
		return nil
	}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	select {
	case p := <-got:
		return p
	case <-time.After(interopWait):
		t.Fatalf("no message within %v", interopWait)
	}
	return nil
}

func assertSame(t *testing.T, got, want *message.Message) {
	t.Helper()
	if got.UUID != want.UUID {
		t.Errorf("UUID = %q, want %q", got.UUID, want.UUID)
	}
	if !maps.Equal(got.Metadata, want.Metadata) {
		t.Errorf("metadata = %v, want %v", got.Metadata, want.Metadata)
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		t.Errorf("payload = %q, want %q", got.Payload, want.Payload)
	}
}

func topicFor(label string) string {
	return benchmarks.NewTopic(benchmarks.Impl{System: "interop", Face: label}, "t")
}

func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	addr := server(t, "REDIS", env.Redis)
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

func redisPeer(t *testing.T, group string) (*redisstream.Publisher, *redisstream.Subscriber) {
	t.Helper()
	// The peer closes the client it is given: one of its own.
	addr := server(t, "REDIS", env.Redis)
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: redis.NewClient(&redis.Options{Addr: addr})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: redis.NewClient(&redis.Options{Addr: addr}),
		ConsumerGroup: group, DisableIndefiniteInitialBlock: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close(); pub.Close() })
	return pub, sub
}

func TestInteropRedis(t *testing.T) {
	t.Run("watermill-redisstream to relay's subscriber, both faces", func(t *testing.T) {
		topic := topicFor("redis-w2r")
		peerPub, _ := redisPeer(t, "unused")
		want := sample()
		if err := peerPub.Publish(topic, want); err != nil {
			t.Fatal(err)
		}
		c := redisClient(t)
		sub, err := redisstreams.NewSubscriber(c, redisstreams.WithGroup("relay-wm"), redisstreams.WithBlockTimeout(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Close() })
		assertSame(t, receive(t, sub, topic), want)

		b, err := redisstreams.NewBroker(c, redisstreams.WithGroup("relay-bytes"), redisstreams.WithBlockTimeout(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		if got := receiveBytes(t, func(h func([]byte) error) error { return b.Subscribe(topic, h) }); !bytes.Equal(got, want.Payload) {
			t.Errorf("byte face payload = %q, want %q", got, want.Payload)
		}
	})

	t.Run("relay's publisher to watermill-redisstream, both faces", func(t *testing.T) {
		c := redisClient(t)
		pub, err := redisstreams.NewPublisher(c)
		if err != nil {
			t.Fatal(err)
		}
		topic := topicFor("redis-r2w")
		want := sample()
		if err := pub.Publish(topic, want); err != nil {
			t.Fatal(err)
		}
		_, peerSub := redisPeer(t, "peer")
		assertSame(t, receive(t, peerSub, topic), want)

		b, err := redisstreams.NewBroker(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		topic = topicFor("redis-r2w-bytes")
		if err := b.Publish(context.Background(), topic, want.Payload); err != nil {
			t.Fatal(err)
		}
		_, peerSub = redisPeer(t, "peer")
		got := receive(t, peerSub, topic)
		if got.UUID == "" || !bytes.Equal(got.Payload, want.Payload) {
			t.Errorf("from the byte face: UUID %q, payload %q; want a UUID and %q", got.UUID, got.Payload, want.Payload)
		}
	})
}

func natsConn(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	url := server(t, "NATS", env.NATS)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// natsPeerSub is a watermill-nats subscriber in group, on its own connection
// (its Close drains the connection).
func natsPeerSub(t *testing.T, group string) *wmjs.Subscriber {
	t.Helper()
	nc, _ := natsConn(t)
	sub, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{Conn: nc, Logger: watermill.NopLogger{},
		ResourceInitializer: wmjs.GroupedConsumer(group)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	return sub
}

func TestInteropNATS(t *testing.T) {
	t.Run("watermill-nats to relay's subscriber, both faces", func(t *testing.T) {
		// watermill-nats publishes without creating a stream: relay's
		// subscribers create it (and their consumers) first.
		_, js := natsConn(t)
		topic := topicFor("nats-w2r")
		sub, err := natsjs.NewSubscriber(js, natsjs.WithGroup("relay-wm"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Close() })
		if err := sub.SubscribeInitialize(topic); err != nil {
			t.Fatal(err)
		}
		b, err := natsjs.NewBroker(js, natsjs.WithGroup("relay-bytes"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		got := make(chan []byte, 1)
		if err := b.Subscribe(topic, func(p []byte) error { got <- bytes.Clone(p); return nil }); err != nil {
			t.Fatal(err)
		}

		nc, _ := natsConn(t)
		peerPub, err := wmjs.NewPublisher(wmjs.PublisherConfig{Conn: nc, Logger: watermill.NopLogger{}})
		if err != nil {
			t.Fatal(err)
		}
		want := sample()
		if err := peerPub.Publish(topic, want); err != nil {
			t.Fatal(err)
		}
		assertSame(t, receive(t, sub, topic), want)
		select {
		case p := <-got:
			if !bytes.Equal(p, want.Payload) {
				t.Errorf("byte face payload = %q, want %q", p, want.Payload)
			}
		case <-time.After(interopWait):
			t.Fatalf("byte face: no message within %v", interopWait)
		}
	})

	t.Run("relay's publisher to watermill-nats, both faces", func(t *testing.T) {
		// relay's stream for a plain topic is named like the topic, which is
		// where watermill-nats looks for it.
		_, js := natsConn(t)
		pub, err := natsjs.NewPublisher(js)
		if err != nil {
			t.Fatal(err)
		}
		topic := topicFor("nats-r2w")
		if natsjs.StreamName(topic) != topic {
			t.Fatalf("StreamName(%q) = %q: watermill-nats would not find the stream", topic, natsjs.StreamName(topic))
		}
		want := sample()
		if err := pub.Publish(topic, want); err != nil {
			t.Fatal(err)
		}
		assertSame(t, receive(t, natsPeerSub(t, "peer"), topic), want)

		b, err := natsjs.NewBroker(js)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		topic = topicFor("nats-r2w-bytes")
		if err := b.Publish(context.Background(), topic, want.Payload); err != nil {
			t.Fatal(err)
		}
		got := receive(t, natsPeerSub(t, "peer"), topic)
		if got.UUID == "" || !bytes.Equal(got.Payload, want.Payload) {
			t.Errorf("from the byte face: UUID %q, payload %q; want a UUID and %q", got.UUID, got.Payload, want.Payload)
		}
	})
}
