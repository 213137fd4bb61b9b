package retrier

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestAttemptsAreCounted(t *testing.T) {
	tests := []struct {
		name       string
		maxDeliver int
		failures   int // the handler fails this many times, then succeeds
		wantCalls  int
		wantDead   bool
	}{
		{name: "success at first attempt", maxDeliver: 3, failures: 0, wantCalls: 1},
		{name: "success at last attempt", maxDeliver: 3, failures: 2, wantCalls: 3},
		{name: "every attempt fails", maxDeliver: 3, failures: 100, wantCalls: 3, wantDead: true},
		{name: "max deliver 1 means no retry", maxDeliver: 1, failures: 100, wantCalls: 1, wantDead: true},
		{name: "five attempts", maxDeliver: 5, failures: 100, wantCalls: 5, wantDead: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := newSyncBroker()
			b := newRetrier(t, inner, WithMaxDeliver(tt.maxDeliver))
			var calls int
			subscribe(t, b, "orders", func([]byte) error {
				calls++
				if calls <= tt.failures {
					return errors.New("boom")
				}
				return nil
			})
			payload := []byte{0, 0xff, 'x'}
			publish(t, b, "orders", payload)
			if calls != tt.wantCalls {
				t.Errorf("handler called %d times, want %d", calls, tt.wantCalls)
			}
			dead := inner.on("orders.dead")
			if got := len(dead) == 1; got != tt.wantDead || len(dead) > 1 {
				t.Fatalf("dead letters = %q, want dead-lettered = %v", dead, tt.wantDead)
			}
			if tt.wantDead && !bytes.Equal(dead[0], payload) {
				t.Errorf("dead letter = %q, want the payload byte for byte %q", dead[0], payload)
			}
			if res := inner.handlerResults(); len(res) != 1 || res[0] != nil {
				t.Errorf("wrapped handler returned %v, want [nil]: the message was settled", res)
			}
		})
	}
}

func TestBackoffIsObservedBetweenAttempts(t *testing.T) {
	const minBackoff = 40 * time.Millisecond
	inner := newSyncBroker()
	b := newRetrier(t, inner, WithMaxDeliver(3), WithBackoff(minBackoff, 4*minBackoff))
	var times []time.Time
	subscribe(t, b, "orders", func([]byte) error {
		times = append(times, time.Now())
		return errors.New("boom")
	})
	publish(t, b, "orders", []byte("x"))
	if len(times) != 3 {
		t.Fatalf("handler called %d times, want 3", len(times))
	}
	for i := 1; i < len(times); i++ {
		// After failure i the wait is at least half of min·2^(i-1).
		want := (minBackoff << (i - 1)) / 2
		if gap := times[i].Sub(times[i-1]); gap < want {
			t.Errorf("gap before attempt %d = %v, want at least %v", i+1, gap, want)
		}
	}
}

func TestPanicCountsAsFailedAttempt(t *testing.T) {
	inner := newSyncBroker()
	b := newRetrier(t, inner, WithMaxDeliver(3))
	var calls int
	subscribe(t, b, "orders", func([]byte) error {
		calls++
		panic("kaboom")
	})
	publish(t, b, "orders", []byte("x"))
	if calls != 3 {
		t.Errorf("handler called %d times, want 3", calls)
	}
	if dead := inner.on("orders.dead"); len(dead) != 1 {
		t.Errorf("dead letters = %q, want one", dead)
	}
}

func TestHandlerGetsItsOwnCopyOfThePayload(t *testing.T) {
	inner := newSyncBroker()
	b := newRetrier(t, inner, WithMaxDeliver(2))
	subscribe(t, b, "orders", func(p []byte) error {
		for i := range p {
			p[i] = 0
		}
		return errors.New("boom")
	})
	publish(t, b, "orders", []byte("abc"))
	if dead := inner.on("orders.dead"); len(dead) != 1 || string(dead[0]) != "abc" {
		t.Fatalf("dead letters = %q, want [abc] although the handler scribbled on its payload", dead)
	}
}
