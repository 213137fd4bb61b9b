package pubsubtest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-relay/relay"
	"github.com/stretchr/testify/assert"
)

func (s *byteSuite) testCloseConcurrent(t *testing.T) {
	b := s.broker(t, DefaultConfig())
	subscribe(t, b, NewTopic(t), func([]byte) error { return nil })
	const closers = 10
	errs := make(chan error, closers)
	var wg sync.WaitGroup
	for range closers {
		wg.Go(func() { errs <- b.Close() })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitShort):
		t.Fatalf("%d concurrent Close calls did not all return within %v", closers, waitShort)
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Close: %v", err)
		}
	}
	assert.NoError(t, b.Close(), "Close after Close")
}

func (s *byteSuite) testCloseWaits(t *testing.T) {
	b := s.broker(t, DefaultConfig())
	started := make(chan struct{})
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // runs before the broker's Close, even after a failure
	var once sync.Once
	var returned atomic.Bool
	topic := NewTopic(t)
	subscribe(t, b, topic, func([]byte) error {
		once.Do(func() { close(started) })
		<-release
		time.Sleep(10 * time.Millisecond) // widen the window in which an early Close would show
		returned.Store(true)
		return nil
	})
	publish(t, b, topic, []byte("w"))
	select {
	case <-started:
	case <-time.After(waitShort):
		t.Fatalf("handler not called within %v", waitShort)
	}
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a handler was still running", err)
	case <-time.After(100 * time.Millisecond): // Close must still be waiting
	}
	releaseOnce()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
		if !returned.Load() {
			t.Error("Close returned before the running handler returned")
		}
	case <-time.After(waitShort):
		t.Fatalf("Close did not return within %v after the handler was released", waitShort)
	}
}

func (s *byteSuite) testErrClosed(t *testing.T) {
	b := s.broker(t, DefaultConfig())
	topic := NewTopic(t)
	subscribe(t, b, topic, func([]byte) error { return nil })
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitShort)
	defer cancel()
	assert.NoError(t, checkErrorIs("Publish after Close", b.Publish(ctx, topic, []byte("x")), relay.ErrClosed))
	assert.NoError(t, checkErrorIs("Subscribe after Close", b.Subscribe(NewTopic(t), func([]byte) error { return nil }), relay.ErrClosed))
}

func (s *byteSuite) testNothingLostOnClose(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Concurrency = 1 // so that the second message waits, unfinished, behind the first
	topic := NewTopic(t)
	want := []string{"first", "second"}
	a := s.broker(t, cfg)
	started := make(chan struct{})
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // runs before the broker's Close, even after a failure
	var once sync.Once
	subscribe(t, a, topic, func([]byte) error {
		once.Do(func() { close(started) })
		<-release
		return errInduced // the handler that was running at Close fails
	})
	publishAll(t, s.broker(t, DefaultConfig()), topic, want)
	select {
	case <-started:
	case <-time.After(waitShort):
		t.Fatalf("handler not called within %v", waitShort)
	}
	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	var closeErr error
	select {
	case closeErr = <-closed:
		t.Errorf("Close returned while a handler was still running")
	case <-time.After(50 * time.Millisecond): // let Close begin before the handler fails
		releaseOnce()
		select {
		case closeErr = <-closed:
		case <-time.After(waitShort):
			t.Fatalf("Close did not return within %v", waitShort)
		}
	}
	if closeErr != nil {
		t.Errorf("Close: %v", closeErr)
	}
	in := newInbox()
	subscribe(t, s.broker(t, cfg), topic, in.handler(nil))
	// A backend may wait its ack wait (or claim timeout) before redelivering.
	in.waitDistinct(t, len(want), waitLong+2*cfg.AckWait, "other broker of the group")
	assert.NoError(t, checkAtLeastOnce(in.counts(), want))
}

func (s *byteSuite) testNoGoroutineLeft(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	// The broker lives in a child test so that the harness's own cleanups
	// (connections it made for the broker) have run before the check.
	t.Run("a broker is used and closed", func(t *testing.T) {
		b := s.broker(t, DefaultConfig())
		topic := NewTopic(t)
		in := newInbox()
		subscribe(t, b, topic, in.handler(nil))
		subscribe(t, b, NewTopic(t), in.handler(nil))
		publishAll(t, b, topic, messages("g", 20))
		in.waitDistinct(t, 20, waitShort, "subscription")
		assert.NoError(t, b.Close(), "Close")
	})
	goleak.VerifyNone(t, ignore)
}

func (s *wmSuite) testErrClosed(t *testing.T) {
	topic := NewTopic(t)
	pub := s.publisher(t, DefaultConfig())
	sub := s.subscriber(t, DefaultConfig())
	open, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
	if err := pub.Close(); err != nil {
		t.Fatalf("publisher Close: %v", err)
	}
	if err := sub.Close(); err != nil {
		t.Fatalf("subscriber Close: %v", err)
	}
	err = pub.Publish(topic, message.NewMessage(watermill.NewUUID(), []byte("x")))
	assert.NoError(t, checkErrorIs("Publish after Close", err, relay.ErrClosed))
	_, err = sub.Subscribe(context.Background(), topic)
	assert.NoError(t, checkErrorIs("Subscribe after Close", err, relay.ErrClosed))
	select {
	case m, ok := <-open:
		if ok {
			t.Errorf("message %q delivered after Close, want the channel closed", m.UUID)
		}
	case <-time.After(waitShort):
		t.Errorf("the channel of a Subscribe call is still open %v after Close", waitShort)
	}
}
