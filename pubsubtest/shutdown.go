package pubsubtest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
)

// shutdownDeadline is the deadline the Shutdown sub-tests give; Shutdown
// must return within it plus waitShort, whatever the handlers do.
const shutdownDeadline = 200 * time.Millisecond

// testShutdownDeadline: with a handler that does not return, Close would
// wait for ever; Shutdown(ctx) returns soon after ctx ends, with an error
// wrapping ctx's, and the broker is closed from then on. A broker without
// Shutdown is told so: its Close cannot be bounded.
func (s *byteSuite) testShutdownDeadline(t *testing.T) {
	b := s.broker(t, DefaultConfig())
	sd, ok := b.(relay.Shutdowner)
	if !ok {
		t.Skipf("%T does not implement relay.Shutdowner: its Close cannot be bounded while a handler runs", b)
	}
	topic := NewTopic(t)
	started, release := make(chan struct{}), make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // before the broker's Close, even after a failure
	var once sync.Once
	subscribe(t, b, topic, func([]byte) error {
		once.Do(func() { close(started) })
		<-release
		return nil
	})
	publish(t, b, topic, []byte("blocked"))
	select {
	case <-started:
	case <-time.After(waitShort):
		t.Fatalf("handler not called within %v", waitShort)
	}
	err := shutdownWithin(t, sd)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a handler still blocked = %v, want an error wrapping context.DeadlineExceeded", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitShort)
	defer cancel()
	if err := b.Publish(ctx, topic, []byte("late")); !errors.Is(err, relay.ErrClosed) {
		t.Errorf("Publish after Shutdown = %v, want ErrClosed", err)
	}
	// Once the handler returns, a later Close waits for it and succeeds.
	releaseOnce()
	if err := closeWithin(b.Close); err != nil {
		t.Errorf("Close after Shutdown, once the handler returned: %v", err)
	}
}

// testShutdownFromHandler: a handler may call Shutdown(ctx) on its own
// broker. Shutdown cannot finish waiting for the handler that calls it, so it
// returns at ctx's deadline with an error wrapping context.DeadlineExceeded,
// and the broker's later Close returns once the handler did. It guards
// against the self-deadlock of an unbounded Close (Close itself must not be
// called from inside a handler).
func (s *byteSuite) testShutdownFromHandler(t *testing.T) {
	b := s.broker(t, DefaultConfig())
	sd, ok := b.(relay.Shutdowner)
	if !ok {
		t.Skipf("%T does not implement relay.Shutdowner", b)
	}
	topic := NewTopic(t)
	result := make(chan error, 1)
	subscribe(t, b, topic, func([]byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownDeadline)
		defer cancel()
		err := sd.Shutdown(ctx)
		select {
		case result <- err:
		default: // a redelivery: the first result is what counts
		}
		return nil
	})
	publish(t, b, topic, []byte("x"))
	select {
	case err := <-result:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown from inside a handler = %v, want an error wrapping context.DeadlineExceeded", err)
		}
	case <-time.After(waitShort + shutdownDeadline):
		t.Fatalf("Shutdown (%v deadline) called from inside a handler did not return within %v: self-deadlock",
			shutdownDeadline, waitShort+shutdownDeadline)
	}
	if err := closeWithin(b.Close); err != nil {
		t.Errorf("Close after a handler's Shutdown: %v", err)
	}
}

// testShutdownDeadline: a message out on a channel, neither acked nor
// nacked, does not keep a Watermill subscriber's Shutdown beyond its ctx.
func (s *wmSuite) testShutdownDeadline(t *testing.T) {
	sub := s.subscriber(t, DefaultConfig())
	sd, ok := sub.(relay.Shutdowner)
	if !ok {
		t.Skipf("%T does not implement relay.Shutdowner: its Close cannot be bounded while a message is out", sub)
	}
	topic := NewTopic(t)
	msgs, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
	if err := s.publisher(t, DefaultConfig()).Publish(topic, message.NewMessage(watermill.NewUUID(), []byte("held"))); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	var held *message.Message
	select {
	case held = <-msgs: // neither acked nor nacked
	case <-time.After(waitShort):
		t.Fatalf("no message within %v", waitShort)
	}
	if err := shutdownWithin(t, sd); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a message out unacked = %v, want nil or an error wrapping context.DeadlineExceeded", err)
	}
	held.Ack()
	if err := closeWithin(sub.Close); err != nil {
		t.Errorf("Close after Shutdown: %v", err)
	}
}

// shutdownWithin calls Shutdown with shutdownDeadline and fails t unless it
// returns within waitShort more.
func shutdownWithin(t *testing.T, sd relay.Shutdowner) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownDeadline)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sd.Shutdown(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(shutdownDeadline + waitShort):
		t.Fatalf("Shutdown with a %v deadline did not return within %v", shutdownDeadline, shutdownDeadline+waitShort)
		return nil
	}
}
