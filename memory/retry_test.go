package memory

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestRedeliveryWaitsBackoff(t *testing.T) {
	tests := []struct {
		name       string
		native     bool
		maxDeliver int
	}{
		{name: "plain queue ignores max deliver", native: false, maxDeliver: 1},
		{name: "native retries", native: true, maxDeliver: 1000},
	}
	const backoff = 40 * time.Millisecond
	const window = 400 * time.Millisecond
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var times []time.Time
			hub := testHub(t)
			b := newTestBroker(t, hub, WithBackoff(backoff, backoff), WithNativeRetries(tt.native),
				WithMaxDeliver(tt.maxDeliver))
			if err := b.Subscribe("fail", func([]byte) error {
				mu.Lock()
				defer mu.Unlock()
				times = append(times, time.Now())
				return errors.New("always")
			}); err != nil {
				t.Fatal(err)
			}
			publishN(t, b, "fail", 1)
			time.Sleep(window) // the window we count deliveries in
			mu.Lock()
			n := len(times)
			gaps := make([]time.Duration, 0, n)
			for i := 1; i < n; i++ {
				gaps = append(gaps, times[i].Sub(times[i-1]))
			}
			mu.Unlock()
			// Each wait is at least the min backoff, never less (the equal
			// jitter of old waited down to half of it): at most window/backoff+1.
			if max := int(window/backoff) + 1; n < 2 || n > max {
				t.Fatalf("%d deliveries in %v with backoff %v, want 2..%d", n, window, backoff, max)
			}
			for _, g := range gaps {
				if g < backoff-time.Millisecond {
					t.Fatalf("redelivered after %v, below the min backoff %v", g, backoff)
				}
			}
			if got := stored(hub, "fail.dead"); got != 0 {
				t.Fatalf("%d dead letters, want none", got)
			}
			if tt.native != b.HandlesRetries() {
				t.Fatalf("HandlesRetries() = %v with WithNativeRetries(%v)", b.HandlesRetries(), tt.native)
			}
		})
	}
}

func TestFailedMessageDoesNotBlockOthers(t *testing.T) {
	hub := testHub(t)
	b := newTestBroker(t, hub, WithConcurrency(1), WithBackoff(100*time.Millisecond, 100*time.Millisecond))
	var rec recorder
	failed := false
	if err := b.Subscribe("q", func(p []byte) error {
		if string(p) == "0" && !failed {
			failed = true // one handler at a time: no race
			return errors.New("once")
		}
		return rec.handle(p)
	}); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, "q", 3)
	eventually(t, 5*time.Second, "3 handled", func() bool { return rec.len() == 3 })
	if got, want := rec.list(), []string{"1", "2", "0"}; !slices.Equal(got, want) {
		t.Fatalf("handled %v, want %v: the failed message comes back after the later ones", got, want)
	}
}
