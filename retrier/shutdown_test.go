package retrier

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit"
	"github.com/go-relay/relay/memory"
)

// closeWhileBlocked starts a publish whose delivery blocks in the retrier,
// waits until blocked reports true, closes the retrier and returns how long
// Close took and what the wrapped handler returned.
func closeWhileBlocked(t *testing.T, inner *syncBroker, b relay.Broker, blocked func() bool) (time.Duration, error) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := b.Publish(context.Background(), "orders", []byte("x")); err != nil {
			t.Errorf("Publish: %v", err)
		}
	}()
	eventually(t, 5*time.Second, "the delivery to block", blocked)
	start := time.Now()
	if err := testkit.CloseWithin(t, waitClose, b.Close, "Close while the delivery is blocked"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	took := time.Since(start)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the delivery did not end after Close")
	}
	res := inner.handlerResults()
	if len(res) != 1 {
		t.Fatalf("wrapped handler results = %v, want one", res)
	}
	return took, res[0]
}

func TestCloseInterruptsBackoff(t *testing.T) {
	inner := newSyncBroker()
	b, err := New(inner, WithBackoff(time.Minute, time.Minute), WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	subscribe(t, b, "orders", func([]byte) error { calls.Add(1); return errors.New("boom") })
	took, res := closeWhileBlocked(t, inner, b, func() bool { return calls.Load() == 1 })
	if took > time.Second {
		t.Errorf("Close took %v during a 1-minute backoff, want under 1s", took)
	}
	if !errors.Is(res, relay.ErrClosed) {
		t.Errorf("wrapped handler returned %v, want an error wrapping ErrClosed so the message is kept", res)
	}
	if calls.Load() != 1 {
		t.Errorf("handler called %d times, want 1", calls.Load())
	}
	if dead := inner.on("orders.dead"); len(dead) != 0 {
		t.Errorf("dead letters = %q, want none: Close is not a failure", dead)
	}
	if inner.closeCalls != 1 {
		t.Errorf("wrapped broker closed %d times, want 1", inner.closeCalls)
	}
}

func TestCloseInterruptsDeadLetterRetry(t *testing.T) {
	inner := newSyncBroker()
	var tries atomic.Int32
	inner.publishErr = func(topic string) error {
		if topic == "orders.dead" {
			tries.Add(1)
			return errors.New("broker unavailable")
		}
		return nil
	}
	b, err := New(inner, WithMaxDeliver(1), WithBackoff(time.Minute, time.Minute), WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	subscribe(t, b, "orders", func([]byte) error { return errors.New("boom") })
	took, res := closeWhileBlocked(t, inner, b, func() bool { return tries.Load() == 1 })
	if took > time.Second {
		t.Errorf("Close took %v, want under 1s", took)
	}
	if res == nil || !errors.Is(res, relay.ErrClosed) {
		t.Errorf("wrapped handler returned %v, want an error: the message was neither handled nor dead-lettered", res)
	}
}

func TestCloseWaitsForRunningHandler(t *testing.T) {
	inner := newSyncBroker()
	b, err := New(inner, WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // even after a failure
	subscribe(t, b, "orders", func([]byte) error { close(started); <-release; return nil })
	published := make(chan struct{})
	go func() {
		defer close(published)
		if err := b.Publish(context.Background(), "orders", nil); err != nil {
			t.Errorf("Publish: %v", err)
		}
	}()
	testkit.Receive(t, started, waitClose, "handler call")
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a handler was running")
	case <-time.After(50 * time.Millisecond):
	}
	unblock()
	if err := testkit.Receive(t, closed, waitClose, "Close once the handler was released"); err != nil {
		t.Fatal(err)
	}
	testkit.Closed(t, published, waitClose, "Publish once the handler was released")
	if res := inner.handlerResults(); len(res) != 1 || res[0] != nil {
		t.Errorf("wrapped handler returned %v, want [nil]", res)
	}
}

func TestDeliveryAfterCloseReturnsError(t *testing.T) {
	inner := newSyncBroker()
	b, err := New(inner, WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	subscribe(t, b, "orders", func([]byte) error { calls++; return nil })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// The wrapped broker may still deliver between the retrier's Close and its
	// own: simulate it by calling the registered handler directly.
	if err := inner.subs["orders"][0]([]byte("x")); !errors.Is(err, relay.ErrClosed) {
		t.Errorf("wrapped handler after Close returned %v, want ErrClosed", err)
	}
	if calls != 0 {
		t.Errorf("user handler called %d times after Close", calls)
	}
}

func TestClosedBrokerReturnsErrClosed(t *testing.T) {
	inner := newSyncBroker()
	b, err := New(inner, WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{name: "publish", call: func() error { return b.Publish(context.Background(), "orders", nil) }},
		{name: "subscribe", call: func() error { return b.Subscribe("orders", func([]byte) error { return nil }) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, relay.ErrClosed) || !strings.HasPrefix(err.Error(), "retrier: "+tt.name) {
				t.Fatalf("%s after Close = %v, want \"retrier: %s ...\" wrapping ErrClosed", tt.name, err, tt.name)
			}
		})
	}
}

func TestCloseIsIdempotentAndConcurrent(t *testing.T) {
	inner := newSyncBroker()
	b, err := New(inner, WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := b.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	testkit.Wait(t, &wg, waitClose, "8 concurrent Close calls")
	if err := b.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}
	if inner.closeCalls != 1 {
		t.Errorf("wrapped broker closed %d times, want 1", inner.closeCalls)
	}
}

func TestCloseReturnsWrappedBrokerError(t *testing.T) {
	b, err := New(failingClose{newSyncBroker()}, WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Close = %v, want the wrapped broker's error", err)
	}
}

// Close while a failed delivery waits out a 5 s backoff, over a memory broker
// without native retries: Close returns within 2 s, and a new retrier of the
// group on the same hub gets the message. It guards against a Close that
// sleeps through the backoff, and against a message dropped because its
// retry loop was cut short.
func TestCloseDuringBackoffKeepsTheMessageForTheNextRetrier(t *testing.T) {
	hub, err := memory.NewHub()
	require.NoError(t, err)
	mk := func() relay.Broker {
		mb, err := memory.NewBroker(memory.WithHub(hub), memory.WithNativeRetries(false), memory.WithLogger(quietLogger))
		require.NoError(t, err)
		return newRetrier(t, mb, WithMaxDeliver(3), WithBackoff(5*time.Second, 10*time.Second))
	}
	r := mk()
	var calls atomic.Int32
	subscribe(t, r, "orders", func([]byte) error { calls.Add(1); return errors.New("transient") })
	publish(t, r, "orders", []byte("p"))
	eventually(t, 10*time.Second, "the first delivery", func() bool { return calls.Load() > 0 })
	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not return within 2s while a delivery waits out its backoff")
	}
	got := make(chan []byte, 1)
	subscribe(t, mk(), "orders", func(p []byte) error {
		select {
		case got <- p:
		default:
		}
		return nil
	})
	select {
	case p := <-got:
		assert.Equal(t, "p", string(p))
	case <-time.After(10 * time.Second):
		t.Fatal("the message was not delivered to a new retrier within 10s of a Close during backoff: lost")
	}
}
