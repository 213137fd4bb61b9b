package redisstreams_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit"
	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/redisstreams"
)

// Shutdown gives up on a handler that does not return once its ctx is done,
// returns the ctx error, and stops refreshing the handler's entry, so that
// another consumer of the group claims it after the claim timeout.
func TestShutdownStopsWaitingForBlockedHandler(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("stuck")
	const claim = 300 * time.Millisecond
	opts := fast(redisstreams.WithClaimTimeout(claim))
	b, err := redisstreams.NewBroker(e.rc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var returned sync.WaitGroup
	returned.Add(1)
	t.Cleanup(func() {
		close(release)
		// Bounded: when the handler was never called, nothing marks it returned.
		testkit.Wait(t, &returned, waitClose, "the released handler's return")
	})
	if err := b.Subscribe(topic, func([]byte) error {
		once.Do(func() { close(started); <-release; returned.Done() })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, "m")
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not started within 10s")
	}

	c, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = b.Shutdown(c)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Shutdown took %v; want about its 200ms ctx", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "redisstreams: ") {
		t.Errorf("Shutdown = %v; want context.DeadlineExceeded, wrapped", err)
	}
	if err := b.Publish(ctx(t), topic, []byte("late")); !errors.Is(err, relay.ErrClosed) {
		t.Errorf("Publish after Shutdown = %v; want ErrClosed", err)
	}

	other := broker(t, e.rc, opts...)
	rec := newRecorder()
	if err := other.Subscribe(topic, func(p []byte) error { rec.add(p); return nil }); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the abandoned entry was not claimed by another consumer",
		func() bool { return rec.count("m") == 1 })
	if err := testkit.CloseWithin(t, waitClose, b.Close, "Close after Shutdown gave up on the handler"); err != nil {
		t.Errorf("Close after Shutdown: %v", err)
	}
}

// Subscriber.Shutdown with a done ctx returns the ctx error too.
func TestSubscriberShutdownReturnsContextError(t *testing.T) {
	e := newEnv(t)
	s, err := redisstreams.NewSubscriber(e.rc, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Subscribe(context.Background(), e.topic("w")); err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(c); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v; want nil or context.Canceled", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
}

// Close does not wait for the block timeout of the reads in progress: with
// the default 2 s, closing three subscriptions takes well under a second.
func TestCloseWithDefaultBlockTimeoutIsPrompt(t *testing.T) {
	e := newEnv(t)
	b, err := redisstreams.NewBroker(e.rc, redisstreams.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if err := b.Subscribe(e.topic(name), func([]byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "reads not blocked", func() bool {
		list, err := e.rc.ClientList(context.Background()).Result()
		return err == nil && strings.Count(list, "cmd=xreadgroup") >= 3
	})
	start := time.Now()
	if err := testkit.CloseWithin(t, waitClose, b.Close, "Close of three idle subscriptions"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("Close took %v; want under 500ms", took)
	}
}

// Close against a hung Redis (SIGSTOP) returns within its documented bound:
// the last ack attempt and the clean-up share about a second, however long
// the client's own timeouts are. It took 15–20 s.
func TestCloseAgainstHungRedisIsBounded(t *testing.T) {
	redistest.RequireControl(t)
	e := newEnv(t)
	topic := e.topic("hung")
	b, err := redisstreams.NewBroker(e.rc, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	for _, name := range []string{"a", "b"} {
		if err := b.Subscribe(e.topic(name), func([]byte) error {
			once.Do(func() { close(started); <-release })
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Subscribe(topic, func([]byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	publish(t, b, e.topic("a"), "m")
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		close(release)
		b.Close()
		t.Fatal("handler not started within 10s")
	}
	if err := e.srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.srv.Resume(); err != nil {
			t.Error(err)
		}
	})
	close(release) // its XACK hangs
	start := time.Now()
	if err := testkit.CloseWithin(t, waitClose, b.Close, "Close against a hung Redis"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("Close against a hung Redis took %v; want about a second", took)
	} else {
		t.Logf("Close took %v", took)
	}
}

// Seed defect 7: there was no Close, and the read loop ignored shutdown.
// Close must return within about the block timeout, after the running
// handler returned, with no goroutine left and the client still usable.
func TestCloseIsPromptAndLeavesClientOpen(t *testing.T) {
	e := newEnv(t)
	ignore := goleak.IgnoreCurrent()
	const block = 300 * time.Millisecond
	b, err := redisstreams.NewBroker(e.rc, fast(redisstreams.WithBlockTimeout(block))...)
	if err != nil {
		t.Fatal(err)
	}
	var running, finished atomic.Bool
	for _, name := range []string{"a", "b", "c"} {
		if err := b.Subscribe(e.topic(name), func([]byte) error {
			running.Store(true)
			time.Sleep(200 * time.Millisecond)
			finished.Store(true)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	publish(t, b, e.topic("a"), "slow")
	eventually(t, 5*time.Second, "handler not started", running.Load)

	start := time.Now()
	if err := testkit.CloseWithin(t, waitClose, b.Close, "Close with a handler running"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	took := time.Since(start)
	if took > block+time.Second {
		t.Errorf("Close took %v; want about the block timeout %v", took, block)
	}
	if !finished.Load() {
		t.Error("Close returned before the running handler finished")
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := e.rc.Ping(ctx(t)).Err(); err != nil {
		t.Errorf("client unusable after Close: %v", err)
	}
	if n := pendingCount(t, e.rc, e.topic("a"), redisstreams.DefaultGroup); n != 0 {
		t.Errorf("%d entries pending; the handler that finished during Close must be acked", n)
	}
	if err := goleak.Find(ignore); err != nil {
		t.Errorf("goroutines left after Close: %v", err)
	}
	t.Logf("Close took %v", took)
}
