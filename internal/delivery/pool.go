package delivery

import (
	"context"
	"sync"
)

// Pool runs at most n functions at once. A consumer loop hands each fetched
// delivery to Go, which blocks while n are running: that is the back-pressure
// that bounds in-flight messages and goroutines. With n = 1 functions run one
// after the other in the order Go was called.
type Pool struct {
	slots chan struct{}
	wg    sync.WaitGroup
}

// NewPool returns a pool of n slots; n must be at least 1.
func NewPool(n int) *Pool {
	return &Pool{slots: make(chan struct{}, n)}
}

// Go waits for a free slot, then runs f in its own goroutine. It returns
// ctx.Err() without running f when ctx is done first.
func (p *Pool) Go(ctx context.Context, f func()) error {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.wg.Add(1)
	go func() {
		defer func() {
			<-p.slots
			p.wg.Done()
		}()
		f()
	}()
	return nil
}

// Free returns how many slots are free now: a fetch loop asks for at most that
// many messages.
func (p *Pool) Free() int { return cap(p.slots) - len(p.slots) }

// Wait returns once every function started by Go has returned.
func (p *Pool) Wait() { p.wg.Wait() }
