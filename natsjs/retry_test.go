package natsjs_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

// The seed answered a failure with Nak without delay: JetStream redelivered at
// once, in a hot loop.
func TestFailingHandlerIsNotAHotLoop(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	const (
		minBackoff = 200 * time.Millisecond
		maxBackoff = time.Second
		watch      = 4 * time.Second
	)
	b := newBroker(t, js, natsjs.WithMaxDeliver(1000), natsjs.WithBackoff(minBackoff, maxBackoff))
	var mu sync.Mutex
	var at []time.Time
	topic := natstest.Topic(t, "always.fails")
	if err := b.Subscribe(topic, func([]byte) error {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		return errors.New("induced failure")
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, []byte("x"))
	eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(at) > 0 }, "first delivery")
	mu.Lock()
	first := at[0]
	mu.Unlock()
	time.Sleep(time.Until(first.Add(watch)))
	mu.Lock()
	defer mu.Unlock()
	n := len(at)
	rate := float64(n) / watch.Seconds()
	t.Logf("always-failing handler: %d deliveries in %v = %.2f deliveries/second (backoff %v..%v)", n, watch, rate, minBackoff, maxBackoff)
	// The backoff allows, from the first delivery: 100-200ms, 200-400ms,
	// 400-800ms, then 500ms-1s per delivery: at most 9 in 4 s.
	if n > 9 {
		t.Errorf("%d deliveries in %v (%.1f/s): faster than the backoff allows", n, watch, rate)
	}
	if n < 3 {
		t.Errorf("%d deliveries in %v: the failing message is not retried while the consumer runs", n, watch)
	}
	for i := 1; i < n; i++ {
		if gap := at[i].Sub(at[i-1]); gap < minBackoff/2 {
			t.Errorf("delivery %d came %v after the previous one, want at least %v", i+1, gap, minBackoff/2)
		}
	}
}
