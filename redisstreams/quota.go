package redisstreams

import (
	"context"
	"sync"
)

// quota counts the entries a subscription may still take on. Takers wait for
// room; give wakes them all.
type quota struct {
	mu   sync.Mutex
	free int
	wake chan struct{} // closed by give; made by a taker that waits
}

// take waits until at least least entries are free, then takes up to most
// of them. It returns 0 when ctx is done first.
func (q *quota) take(ctx context.Context, least, most int) int {
	return q.wait(ctx, least, most, true)
}

// await is take without taking: it returns how many could be taken now. The
// caller takes what it got with force.
func (q *quota) await(ctx context.Context, least, most int) int {
	return q.wait(ctx, least, most, false)
}

// force takes n entries, even past the limit.
func (q *quota) force(n int) {
	q.mu.Lock()
	q.free -= n
	q.mu.Unlock()
}

func (q *quota) wait(ctx context.Context, least, most int, take bool) int {
	for {
		q.mu.Lock()
		if q.free >= least {
			n := min(q.free, most)
			if take {
				q.free -= n
			}
			q.mu.Unlock()
			return n
		}
		if q.wake == nil {
			q.wake = make(chan struct{})
		}
		wake := q.wake
		q.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0
		}
	}
}

// give returns n entries.
func (q *quota) give(n int) {
	q.mu.Lock()
	q.free += n
	wake := q.wake
	q.wake = nil
	q.mu.Unlock()
	if wake != nil {
		close(wake)
	}
}
