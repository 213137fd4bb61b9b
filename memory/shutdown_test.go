package memory

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit"
)

// Shutdown gives up on a handler that outlives its context: it returns the
// context's error, and the handler's delivery stays in flight (no other
// subscription of the group gets it) until the handler returns, when it is
// settled as usual.
func TestBrokerShutdownStopsWaitingForRunningHandler(t *testing.T) {
	tests := []struct {
		name         string
		result       error
		wantHandover bool // the group's other subscription gets the message afterwards
	}{
		{name: "handler succeeds late: acknowledged", result: nil, wantHandover: false},
		{name: "handler fails late: handed back to the group", result: errors.New("boom"), wantHandover: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := testHub(t)
			b := newTestBroker(t, hub, WithBackoff(time.Millisecond, time.Millisecond))
			started, release := make(chan struct{}), make(chan struct{})
			unblock := sync.OnceFunc(func() { close(release) })
			t.Cleanup(unblock)
			if err := b.Subscribe("s", func([]byte) error {
				close(started)
				<-release
				return tt.result
			}); err != nil {
				t.Fatal(err)
			}
			publishN(t, b, "s", 1)
			select {
			case <-started:
			case <-time.After(5 * time.Second):
				t.Fatal("handler not started")
			}

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			if err := b.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Shutdown with a handler running past its deadline = %v, want an error wrapping context.DeadlineExceeded", err)
			}
			if err := b.Publish(context.Background(), "s", nil); !errors.Is(err, relay.ErrClosed) {
				t.Fatalf("Publish after Shutdown = %v, want ErrClosed", err)
			}

			// The group's other subscription does not get the message while the
			// handler runs.
			var other recorder
			if err := newTestBroker(t, hub).Subscribe("s", other.handle); err != nil {
				t.Fatal(err)
			}
			time.Sleep(30 * time.Millisecond) // a handover would show up now
			if n := other.len(); n != 0 {
				t.Fatalf("the group's other subscription got %d messages while the handler ran", n)
			}

			unblock()
			if err := testkit.CloseWithin(t, waitClose, b.Close, "Close once the handler was released"); err != nil {
				t.Fatalf("Close after the handler returned: %v", err)
			}
			if tt.wantHandover {
				eventually(t, 5*time.Second, "redelivery to the group", func() bool { return other.len() == 1 })
			} else {
				time.Sleep(30 * time.Millisecond) // a redelivery would show up now
				if n := other.len(); n != 0 {
					t.Fatalf("message acknowledged late was delivered again %d times", n)
				}
			}
			eventually(t, 5*time.Second, "every group acknowledged", func() bool { return pending(hub, "s") == 0 })
		})
	}
}

func TestBrokerShutdownReturnsNilOnceHandlersReturn(t *testing.T) {
	b := newTestBroker(t, testHub(t))
	var rec recorder
	if err := b.Subscribe("s", rec.handle); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, "s", 3)
	eventually(t, 5*time.Second, "3 deliveries", func() bool { return rec.len() == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := b.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
	wg.Wait()
	if err := b.Subscribe("s", rec.handle); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("Subscribe after Shutdown = %v, want ErrClosed", err)
	}
}

// The Subscriber's Shutdown (and Close) does not wait for the code reading
// its channels: it may be called from the goroutine handling a message, which
// then counts as not processed.
func TestSubscriberShutdownFromHandlingGoroutine(t *testing.T) {
	hub := testHub(t)
	sub, err := NewSubscriber(hub)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	ch, err := sub.Subscribe(context.Background(), "w")
	if err != nil {
		t.Fatal(err)
	}
	publishN(t, newTestBroker(t, hub), "w", 1)
	select {
	case msg := <-ch: // handling it, never acked
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := sub.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown from the handling goroutine: %v", err)
		}
		select {
		case <-msg.Context().Done():
		default:
			t.Fatal("message context not done after Shutdown")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
	}
	testkit.Closed(t, ch, waitClose, "output channel after Shutdown")
	if _, err := sub.Subscribe(context.Background(), "w"); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("Subscribe after Shutdown = %v, want ErrClosed", err)
	}
	if got := pending(hub, "w"); got != 1 {
		t.Fatalf("%d messages pending, want the unprocessed one", got)
	}
}

func TestCloseUnblocksPublishOnFullTopic(t *testing.T) {
	hub := testHub(t, WithCapacity(1))
	b := newTestBroker(t, hub)
	publishN(t, b, "full", 1)
	done := make(chan error, 1)
	go func() { done <- b.Publish(context.Background(), "full", nil) }()
	time.Sleep(20 * time.Millisecond) // let it block; the result holds either way
	if err := testkit.CloseWithin(t, waitClose, b.Close, "Close with a Publish blocked on a full topic"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, relay.ErrClosed) {
			t.Fatalf("Publish blocked at Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Publish stayed blocked after Close")
	}
}

func TestClose(t *testing.T) {
	b := newTestBroker(t, testHub(t))
	started, release := make(chan struct{}), make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock)
	var finished atomic.Bool
	if err := b.Subscribe("c", func([]byte) error {
		close(started)
		<-release
		finished.Store(true)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, "c", 1)
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("handler not started")
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := b.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	time.Sleep(20 * time.Millisecond) // Close must still be waiting; finished says if it was
	unblock()
	testkit.Wait(t, &wg, waitClose, "3 concurrent Close calls once the handler was released")
	if !finished.Load() {
		t.Fatal("Close returned before the running handler finished")
	}
	if err := b.Publish(context.Background(), "c", nil); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("Publish after Close = %v, want ErrClosed", err)
	}
	if err := b.Subscribe("c", func([]byte) error { return nil }); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("Subscribe after Close = %v, want ErrClosed", err)
	}
}
