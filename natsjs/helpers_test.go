package natsjs_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

const wait = 15 * time.Second // bound of every wait for something that must happen

// testLogger writes the brokers' background log to the test log.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func connect(t *testing.T, s *natstest.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc := natstest.Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func newBroker(t *testing.T, js jetstream.JetStream, opts ...natsjs.Option) *natsjs.Broker {
	t.Helper()
	b, err := natsjs.NewBroker(js, append([]natsjs.Option{natsjs.WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() }) // Close always returns nil
	return b
}

func newSubscriber(t *testing.T, js jetstream.JetStream, opts ...natsjs.Option) *natsjs.Subscriber {
	t.Helper()
	s, err := natsjs.NewSubscriber(js, append([]natsjs.Option{natsjs.WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func publish(t *testing.T, b relay.Broker, topic string, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := b.Publish(ctx, topic, payload); err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
}

func receive(t *testing.T, ch <-chan *message.Message, what string) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
		return m
	case <-time.After(wait):
		t.Fatalf("%s: nothing within %v", what, wait)
		return nil
	}
}

// eventually polls cond every 10 ms until it holds, failing t after wait.
func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", wait, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pollUntil reports whether cond became true within d.
func pollUntil(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// checkQuiet fails t if cond becomes true within d.
func checkQuiet(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			t.Fatalf("within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deadLetters subscribes to topic's dead-letter topic on the Watermill face,
// which shows the dead letter's metadata.
func deadLetters(t *testing.T, js jetstream.JetStream, topic string) <-chan *message.Message {
	t.Helper()
	ch, err := newSubscriber(t, js, natsjs.WithGroup("dead-letter-reader")).Subscribe(t.Context(), topic+".dead")
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func checkDeadLetter(t *testing.T, dl *message.Message, topic, id, attempts, reason string, payload []byte) {
	t.Helper()
	for key, want := range map[string]string{
		relay.MetadataSourceTopic: topic,
		relay.MetadataSourceID:    id,
		relay.MetadataAttempts:    attempts,
	} {
		if got := dl.Metadata.Get(key); got != want {
			t.Errorf("dead letter metadata %s = %q, want %q", key, got, want)
		}
	}
	if got := dl.Metadata.Get(relay.MetadataReason); !strings.Contains(got, reason) {
		t.Errorf("dead letter reason %q does not contain %q", got, reason)
	}
	if !bytes.Equal(dl.Payload, payload) {
		t.Errorf("dead letter payload %q, want %q", dl.Payload, payload)
	}
}

// consumerSettled reports whether the group's consumer on topic has nothing
// pending nor unacknowledged.
func consumerSettled(t *testing.T, js jetstream.JetStream, topic, group string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := js.Consumer(ctx, natsjs.StreamName(topic), natsjs.ConsumerName(group))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.NumAckPending == 0 && info.NumPending == 0 && info.NumRedelivered == 0
}
