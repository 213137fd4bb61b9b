package breaktest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/memory"
	"github.com/go-relay/relay/natsjs"
	"github.com/go-relay/relay/redisstreams"
	"github.com/go-relay/relay/retrier"
)

// TestInvalidOptionsWrapErrInvalidOption checks that every constructor
// refuses an invalid option value (negative max deliver, zero backoff, ack
// wait, claim timeout, request timeout or capacity, a nil client, hub or
// dead-letter function) with an error wrapping relay.ErrInvalidOption, and
// never panics. It guards against untyped errors, silent clamping and
// memory.WithCapacity(0) panicking instead of returning an error.
func TestInvalidOptionsWrapErrInvalidOption(t *testing.T) {
	ne := natsEnv(t)
	re := redisEnv(t)
	tests := []struct {
		name string
		make func() error
	}{
		{"memory max deliver -1", func() error { _, err := memory.NewBroker(memory.WithMaxDeliver(-1)); return err }},
		{"memory backoff 0", func() error { _, err := memory.NewBroker(memory.WithBackoff(0, 0)); return err }},
		{"memory nil hub", func() error { _, err := memory.NewSubscriber(nil); return err }},
		{"memory WithHub(nil)", func() error { _, err := memory.NewBroker(memory.WithHub(nil)); return err }},
		{"memory capacity 0", func() error { _, err := memory.NewHub(memory.WithCapacity(0)); return err }},
		{"nats nil js", func() error { _, err := natsjs.NewBroker(nil); return err }},
		{"nats ack wait 0", func() error { _, err := natsjs.NewBroker(ne.js, natsjs.WithAckWait(0)); return err }},
		{"nats max deliver -1", func() error { _, err := natsjs.NewBroker(ne.js, natsjs.WithMaxDeliver(-1)); return err }},
		{"nats request timeout 0", func() error { _, err := natsjs.NewBroker(ne.js, natsjs.WithRequestTimeout(0)); return err }},
		{"nats concurrency 0", func() error { _, err := natsjs.NewSubscriber(ne.js, natsjs.WithConcurrency(0)); return err }},
		{"redis nil client", func() error { _, err := redisstreams.NewBroker(nil); return err }},
		{"redis max deliver -1", func() error { _, err := redisstreams.NewBroker(re.rc, redisstreams.WithMaxDeliver(-1)); return err }},
		{"redis claim timeout 0", func() error { _, err := redisstreams.NewBroker(re.rc, redisstreams.WithClaimTimeout(0)); return err }},
		{"redis nil dead-letter function", func() error {
			_, err := redisstreams.NewBroker(re.rc, redisstreams.WithDeadLetterTopic(nil))
			return err
		}},
		{"redis concurrency -3", func() error {
			_, err := redisstreams.NewSubscriber(re.rc, redisstreams.WithConcurrency(-3))
			return err
		}},
		{"retrier nil broker", func() error { _, err := retrier.New(nil); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := func() (err error) {
				defer func() {
					if v := recover(); v != nil {
						err = fmt.Errorf("panicked: %v", v)
					}
				}()
				return tt.make()
			}()
			if !errors.Is(err, relay.ErrInvalidOption) {
				t.Errorf("err = %v, want an error wrapping relay.ErrInvalidOption", err)
			}
		})
	}
}

// TestSubscribeInitializeAfterCloseIsErrClosed checks that a Watermill
// Subscriber's SubscribeInitialize (message.SubscribeInitializer, optional in
// Watermill) returns an error wrapping relay.ErrClosed after Close. It guards
// against natsjs returning a context.Canceled error there instead.
func TestSubscribeInitializeAfterCloseIsErrClosed(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		s := e.sub(t, cfg{})
		si, ok := s.(message.SubscribeInitializer)
		if !ok {
			t.Skipf("%T does not implement message.SubscribeInitializer", s)
		}
		closeBounded(t, s.Close)
		if err := si.SubscribeInitialize(e.topic("orders")); !errors.Is(err, relay.ErrClosed) {
			t.Errorf("SubscribeInitialize after Close = %v, want an error wrapping relay.ErrClosed", err)
		}
	})
}

// TestWatermillPublishWithCanceledMessageContextReturnsCtxError publishes,
// through the Watermill Publisher, a message whose context (msg.Context()) is
// already canceled: Publish returns promptly with an error wrapping
// context.Canceled, as the byte face does for its ctx. It guards against a
// Publisher that ignores the message context and stores the message (seen on
// memory and Redis).
func TestWatermillPublishWithCanceledMessageContextReturnsCtxError(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		p := e.pub(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		m := message.NewMessage("u-1", []byte("x"))
		m.SetContext(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Publish(e.topic("ctx"), m) }()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("wm Publish with canceled message context = %v, want an error wrapping context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("wm Publish with canceled message context did not return within 10s")
		}
	})
}
