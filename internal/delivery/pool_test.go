package delivery

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestPoolBoundsConcurrency(t *testing.T) {
	p := NewPool(3)
	var running, peak atomic.Int32
	for range 50 {
		if err := p.Go(context.Background(), func() {
			n := running.Add(1)
			for {
				old := peak.Load()
				if n <= old || peak.CompareAndSwap(old, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			running.Add(-1)
		}); err != nil {
			t.Fatal(err)
		}
	}
	p.Wait()
	if got := peak.Load(); got != 3 {
		t.Fatalf("peak concurrency = %d, want 3", got)
	}
}

func TestPoolKeepsOrderWithOneSlot(t *testing.T) {
	p := NewPool(1)
	var got []int
	for i := range 100 {
		if err := p.Go(context.Background(), func() { got = append(got, i) }); err != nil {
			t.Fatal(err)
		}
	}
	p.Wait()
	for i, v := range got {
		if v != i {
			t.Fatalf("got[%d] = %d: order lost", i, v)
		}
	}
}

func TestPoolGoHonoursContext(t *testing.T) {
	p := NewPool(1)
	release := make(chan struct{})
	_ = p.Go(context.Background(), func() { <-release })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.Go(ctx, func() { t.Error("ran while the pool was full") }); err != context.DeadlineExceeded {
		t.Fatalf("Go on a full pool = %v, want DeadlineExceeded", err)
	}
	close(release)
	p.Wait()
}
