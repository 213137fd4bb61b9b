package lifecycle_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/lifecycle"
	"github.com/go-relay/relay/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sub is a subscription whose Stop waits for release or Abandon.
type sub struct {
	stopping  chan struct{} // closed when Stop begins
	release   chan struct{}
	abandoned chan struct{}
	once      sync.Once
}

func newSub() *sub {
	return &sub{stopping: make(chan struct{}), release: make(chan struct{}), abandoned: make(chan struct{})}
}

func (s *sub) Stop() {
	close(s.stopping)
	select {
	case <-s.release:
	case <-s.abandoned:
	}
}

func (s *sub) Abandon() { s.once.Do(func() { close(s.abandoned) }) }

const wait = 5 * time.Second

func TestShutdownStopsEverySubscriptionInParallel(t *testing.T) {
	r := lifecycle.NewRegistry[*sub]()
	a, b := newSub(), newSub()
	if err := r.Add(a); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(b); err != nil {
		t.Fatal(err)
	}
	began, after := false, make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- r.Shutdown(context.Background(), func() { began = true }, func() { close(after) }) }()
	for _, s := range []*sub{a, b} {
		select {
		case <-s.stopping: // both stop at once: neither waits for the other
		case <-time.After(wait):
			t.Fatal("a subscription was not stopped while another one was stopping")
		}
	}
	if !began {
		t.Error("begin was not run before the subscriptions stopped")
	}
	close(a.release)
	close(b.release)
	if err := testkit.Receive(t, done, wait, "Shutdown's return once both subscriptions were released"); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	select {
	case <-after:
	default:
		t.Error("Shutdown returned before after ran")
	}
	if err := r.Add(newSub()); !errors.Is(err, relay.ErrClosed) {
		t.Errorf("Add after Shutdown = %v, want ErrClosed", err)
	}
	if _, err := r.Enter(); !errors.Is(err, relay.ErrClosed) {
		t.Errorf("Enter after Shutdown = %v, want ErrClosed", err)
	}
	if err := r.Shutdown(context.Background(), nil, nil); err != nil {
		t.Errorf("second Shutdown = %v, want nil", err)
	}
}

func TestShutdownWaitsForSubscribeCallsSettingUp(t *testing.T) {
	r := lifecycle.NewRegistry[*sub]()
	leave, err := r.Enter()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Shutdown(context.Background(), nil, nil) }()
	for deadline := time.Now().Add(wait); !r.Closed(); runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatalf("the registry is not closed %v after Shutdown began", wait)
		}
	}
	late := newSub()
	if err := r.Add(late); !errors.Is(err, relay.ErrClosed) {
		t.Errorf("Add while closing = %v, want ErrClosed (the caller stops it)", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown = %v before the Subscribe setting up left", err)
	default:
	}
	leave()
	if err := testkit.Receive(t, done, wait, "Shutdown's return once the Subscribe setting up left"); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
}

func TestShutdownWithDeadlineAbandonsAndLaterCallWaitsAgain(t *testing.T) {
	r := lifecycle.NewRegistry[*sub]()
	s := newSub()
	if err := r.Add(s); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Shutdown(ctx, nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown with a done context = %v, want context.Canceled", err)
	}
	select {
	case <-s.abandoned:
	case <-time.After(wait):
		t.Fatal("the running subscription was not abandoned")
	}
	var err error
	testkit.Within(t, wait, func() { err = r.Shutdown(context.Background(), nil, nil) }, "later Shutdown of an abandoned subscription")
	if err != nil {
		t.Errorf("later Shutdown = %v, want nil once the subscription stopped", err)
	}
}

func TestRemoveForgets(t *testing.T) {
	r := lifecycle.NewRegistry[*sub]()
	s := newSub()
	if err := r.Add(s); err != nil {
		t.Fatal(err)
	}
	r.Remove(s)
	if n := r.Len(); n != 0 {
		t.Errorf("Len after Remove = %d, want 0", n)
	}
	if err := r.Shutdown(context.Background(), nil, nil); err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	select {
	case <-s.stopping:
		t.Error("a removed subscription was stopped")
	default:
	}
}

// A loop that ends by runtime.Goexit is replaced, so that a pool keeps its
// size; one that returns is not.
func TestGoReplacesALoopEndedByGoexit(t *testing.T) {
	var wg sync.WaitGroup
	var runs atomic.Int32
	lifecycle.Go(&wg, func() {
		if runs.Add(1) < 3 {
			runtime.Goexit()
		}
	})
	testkit.Wait(t, &wg, wait, "the loop ended by Goexit twice, then by a return")
	if n := runs.Load(); n != 3 {
		t.Errorf("loop ran %d times, want 3 (two Goexits, then a return)", n)
	}
}

func TestSleep(t *testing.T) {
	if !lifecycle.Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep with a live context = false, want true")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if lifecycle.Sleep(ctx, time.Hour) {
		t.Error("Sleep with a done context = true, want false")
	}
}
