package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/go-relay/relay/internal/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRestartKeepsFileStoredStream(t *testing.T) {
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "ORDERS", Subjects: []string{"orders"}, Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "orders", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	url := s.URL()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.URL() != url {
		t.Fatalf("URL after restart = %s, want %s", s.URL(), url)
	}
	// The client reconnects on its own; GetMsg retries until it has.
	var msg *jetstream.RawStreamMsg
	for msg == nil {
		stream, err := js.Stream(ctx, "ORDERS")
		if err == nil {
			msg, err = stream.GetMsg(ctx, 1)
		}
		if ctx.Err() != nil {
			t.Fatalf("read after restart: %v", err)
		}
		if msg == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if string(msg.Data) != "hello" {
		t.Fatalf("data = %q, want %q", msg.Data, "hello")
	}
}

func TestStopThenStartReusesPortAndStore(t *testing.T) {
	s := natstest.Start(t, natstest.Config{MaxPayload: 1024})
	nc := natstest.Connect(t, s)
	if got := nc.MaxPayload(); got != 1024 {
		t.Fatalf("MaxPayload = %d, want 1024", got)
	}
	s.Stop()
	s.Stop() // idempotent
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("client did not reconnect after Start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunWithoutTest(t *testing.T) {
	s, err := natstest.Run(natstest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	s.Shutdown() // idempotent
	goleak.VerifyNone(t)
}
