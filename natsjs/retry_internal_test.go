package natsjs

import (
	"testing"
	"time"
)

// TestRetryDelayFollowsTheSharedRule guards the backoff of failed fetches,
// set-ups and publishes being a second implementation: it drew from
// [step/2, step], below minRetry, where relay's one rule
// (delivery.Policy.Backoff) draws from [step, min(2·step, max)].
func TestRetryDelayFollowsTheSharedRule(t *testing.T) {
	tests := []struct {
		name    string
		attempt int
		lo, hi  time.Duration
	}{
		{name: "first failure", attempt: 1, lo: minRetry, hi: 2 * minRetry},
		{name: "second failure", attempt: 2, lo: 2 * minRetry, hi: 4 * minRetry},
		{name: "capped", attempt: 1 << 30, lo: maxRetry, hi: maxRetry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 200 {
				if d := retryDelay(tt.attempt); d < tt.lo || d > tt.hi {
					t.Fatalf("retryDelay(%d) = %v, want within [%v, %v]", tt.attempt, d, tt.lo, tt.hi)
				}
			}
		})
	}
}
