package delivery

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-relay/relay"
)

func TestDecideWaitsForRetryAfter(t *testing.T) {
	p := DefaultPolicy()
	p.MinBackoff, p.MaxBackoff = 10*time.Millisecond, 20*time.Millisecond
	p.MaxRetryAfter = time.Second
	cause := errors.New("rate limited")
	cases := []struct {
		name     string
		err      error
		attempt  int
		action   Action
		min, max time.Duration
	}{
		{"a wait longer than the backoff is waited", relay.RetryAfter(cause, 500*time.Millisecond), 1, Retry, 500 * time.Millisecond, 500 * time.Millisecond},
		{"a wait shorter than the backoff keeps the backoff", relay.RetryAfter(cause, time.Millisecond), 1, Retry, 10 * time.Millisecond, 20 * time.Millisecond},
		{"a wait above the cap is capped", relay.RetryAfter(cause, time.Hour), 1, Retry, time.Second, time.Second},
		{"a negative wait keeps the backoff", relay.RetryAfter(cause, -time.Hour), 1, Retry, 10 * time.Millisecond, 20 * time.Millisecond},
		{"a wrapped RetryAfter counts", fmt.Errorf("call: %w", relay.RetryAfter(cause, 300*time.Millisecond)), 1, Retry, 300 * time.Millisecond, 300 * time.Millisecond},
		{"the last attempt still dead-letters", relay.RetryAfter(cause, 500*time.Millisecond), 3, DeadLetter, 0, 0},
		{"a permanent error still dead-letters", relay.RetryAfter(relay.Permanent(cause), 500*time.Millisecond), 1, DeadLetter, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			action, wait := p.Decide(c.attempt, c.err)
			if action != c.action || wait < c.min || wait > c.max {
				t.Errorf("Decide(%d, %v) = %v, %v; want %v with a wait from %v to %v", c.attempt, c.err, action, wait, c.action, c.min, c.max)
			}
		})
	}
	p.MaxRetryAfter = 0
	if _, wait := p.Decide(1, relay.RetryAfter(cause, time.Hour)); wait > p.MaxBackoff {
		t.Errorf("with MaxRetryAfter 0 the wait is %v, want the backoff only", wait)
	}
}

func TestDueTime(t *testing.T) {
	cases := []struct {
		name    string
		value   string
		want    time.Time
		ok, bad bool
	}{
		{"absent", "", time.Time{}, false, false},
		{"RFC 3339", "2026-01-02T15:04:05Z", time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC), true, false},
		{"with fractions and an offset", "2026-01-02T16:04:05.25+01:00", time.Date(2026, 1, 2, 15, 4, 5, 250e6, time.UTC), true, false},
		{"not a time", "soon", time.Time{}, false, true},
		{"Unix seconds", "1700000000", time.Time{}, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			at, ok, err := DueTime(map[string]string{relay.MetadataDelayedUntil: c.value})
			if ok != c.ok || !at.Equal(c.want) || (err != nil) != c.bad || (c.bad && !errors.Is(err, relay.ErrInvalidDelay)) {
				t.Errorf("DueTime(%q) = %v, %v, %v", c.value, at, ok, err)
			}
		})
	}
}

func TestCheckDue(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name string
		at   time.Time
		bad  bool
	}{
		{"past", now.Add(-time.Hour), false},
		{"at the maximum", now.Add(time.Hour), false},
		{"beyond the maximum", now.Add(time.Hour + time.Millisecond), true},
		{"zero", time.Time{}, true},
	} {
		err := CheckDue(c.at, now, time.Hour)
		if (err != nil) != c.bad || (c.bad && !errors.Is(err, relay.ErrInvalidDelay)) {
			t.Errorf("%s: CheckDue = %v", c.name, err)
		}
	}
}
