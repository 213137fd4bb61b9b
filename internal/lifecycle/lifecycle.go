// Package lifecycle holds what every relay engine does around its delivery
// decisions, written once: the registry of running subscriptions with its
// Close and Shutdown, the worker that survives runtime.Goexit, and the
// context-aware sleep. An engine supplies only its I/O: how a subscription
// stops, and how it abandons what it holds when a Shutdown's context ends.
package lifecycle

import (
	"context"
	"sync"
	"time"

	"github.com/go-relay/relay"
)

// Subscription is a running subscription as the registry stops it.
type Subscription interface {
	comparable
	// Stop stops the subscription and returns once it has stopped: no
	// goroutine of it is left and each of its deliveries is settled or handed
	// back. It is called at most once by the registry, maybe concurrently with
	// Abandon.
	Stop()
	// Abandon makes a Stop in progress stop waiting for running handlers:
	// their deliveries stay pending for the backend to redeliver. It does not
	// block and may be called more than once.
	Abandon()
}

// Registry is the set of running subscriptions of a broker, publisher or
// subscriber face, and its closed state. The zero value is not usable: use
// [NewRegistry].
type Registry[S Subscription] struct {
	mu      sync.Mutex
	closed  bool
	running map[S]struct{}
	setups  sync.WaitGroup // Subscribe calls between Enter and their leave
	once    sync.Once
	done    chan struct{} // closed once the first Shutdown's work is done
}

// NewRegistry returns an open, empty registry.
func NewRegistry[S Subscription]() *Registry[S] {
	return &Registry[S]{running: make(map[S]struct{}), done: make(chan struct{})}
}

// Enter registers a Subscribe call that is setting up, so that Shutdown
// stops the subscription it starts: it returns leave, to be called once the
// subscription was added (or failed), or [relay.ErrClosed] after Shutdown
// began.
func (r *Registry[S]) Enter() (leave func(), err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, relay.ErrClosed
	}
	r.setups.Add(1)
	return r.setups.Done, nil
}

// Add registers a started subscription. After Shutdown began it returns
// [relay.ErrClosed], and the caller must stop s itself.
func (r *Registry[S]) Add(s S) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return relay.ErrClosed
	}
	r.running[s] = struct{}{}
	return nil
}

// Remove forgets s, a subscription that stopped by itself.
func (r *Registry[S]) Remove(s S) {
	r.mu.Lock()
	delete(r.running, s)
	r.mu.Unlock()
}

// Len returns the number of subscriptions registered.
func (r *Registry[S]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running)
}

// Closed reports whether Shutdown began.
func (r *Registry[S]) Closed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Shutdown closes the registry, once: from then on Enter and Add return
// [relay.ErrClosed]. The first call runs begin (which may be nil; a face
// cancels the context of Subscribe calls setting up with it), waits for
// those calls, stops every registered subscription in parallel, so that it
// waits for the slowest rather than the sum of them, and then runs after
// (which may be nil; it stops what the subscriptions share). Every call
// returns nil once all that is done, or, when ctx is done first, abandons the
// subscriptions still registered and returns ctx.Err(); a later call waits
// again.
func (r *Registry[S]) Shutdown(ctx context.Context, begin, after func()) error {
	r.once.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		if begin != nil {
			begin()
		}
		go func() {
			defer close(r.done)
			r.setups.Wait()
			r.mu.Lock()
			subs := make([]S, 0, len(r.running))
			for s := range r.running {
				subs = append(subs, s)
			}
			r.mu.Unlock()
			var wg sync.WaitGroup
			for _, s := range subs {
				wg.Go(s.Stop)
			}
			wg.Wait()
			if after != nil {
				after()
			}
		}()
	})
	select {
	case <-r.done: // done wins over a ctx that is done too
		return nil
	default:
	}
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
	}
	r.mu.Lock()
	for s := range r.running {
		s.Abandon()
	}
	r.mu.Unlock()
	return ctx.Err()
}

// Go runs loop in a new goroutine counted by wg, and runs it again in a new
// one whenever it ends by runtime.Goexit (a handler that calls t.FailNow
// does), so that a pool of workers keeps its size. The engine settles the
// delivery whose handler exited (see delivery.CallSettled) before loop's
// goroutine ends.
func Go(wg *sync.WaitGroup, loop func()) {
	wg.Go(func() {
		returned := false
		defer func() {
			if !returned {
				Go(wg, loop) // wg still counts this goroutine: Add is safe
			}
		}()
		loop()
		returned = true
	})
}

// Sleep waits d or until ctx is done, and reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
