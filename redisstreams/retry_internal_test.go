package redisstreams

import (
	"testing"
	"time"
)

// TestRetryDelayFollowsTheSharedRule guards the backoff of failed reads and
// acks being a second implementation: it took up to a quarter off the step,
// going below readRetryMin, where relay's one rule (delivery.Policy.Backoff)
// draws from [step, min(2·step, max)].
func TestRetryDelayFollowsTheSharedRule(t *testing.T) {
	tests := []struct {
		name     string
		failures int
		lo, hi   time.Duration
	}{
		{name: "first failure", failures: 1, lo: readRetryMin, hi: 2 * readRetryMin},
		{name: "second failure", failures: 2, lo: 2 * readRetryMin, hi: 4 * readRetryMin},
		{name: "capped", failures: 1 << 30, lo: readRetryMax, hi: readRetryMax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 200 {
				if d := retryDelay(tt.failures); d < tt.lo || d > tt.hi {
					t.Fatalf("retryDelay(%d) = %v, want within [%v, %v]", tt.failures, d, tt.lo, tt.hi)
				}
			}
		})
	}
}
