package option

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

func TestSetters(t *testing.T) {
	t.Parallel()
	var (
		s string
		n int
		d time.Duration
		l *slog.Logger
		p delivery.Policy
	)
	tests := []struct {
		name string
		set  func() error
		want string // "" when valid
	}{
		{name: "group", set: func() error { return Group("x", &s, "g") }},
		{name: "empty group", set: func() error { return Group("x", &s, "") }, want: "x: relay: invalid option: empty group"},
		{name: "concurrency", set: func() error { return Concurrency("x", &n, 1) }},
		{name: "zero concurrency", set: func() error { return Concurrency("x", &n, 0) }, want: "x: relay: invalid option: concurrency 0, must be from 1 to 65536"},
		{name: "concurrency at its bound", set: func() error { return Concurrency("x", &n, relay.MaxConcurrency) }},
		{name: "concurrency over its bound", set: func() error { return Concurrency("x", &n, relay.MaxConcurrency+1) }, want: "x: relay: invalid option: concurrency 65537, must be from 1 to 65536"},
		{name: "zero prefetch", set: func() error { return Prefetch("x", &n, 0) }},
		{name: "negative prefetch", set: func() error { return Prefetch("x", &n, -1) }, want: "x: relay: invalid option: prefetch -1, must be from 0 to 65536"},
		{name: "prefetch at its bound", set: func() error { return Prefetch("x", &n, relay.MaxPrefetch) }},
		{name: "prefetch of max int, overflowing concurrency+prefetch", set: func() error { return Prefetch("x", &n, math.MaxInt) }, want: fmt.Sprintf("x: relay: invalid option: prefetch %d, must be from 0 to 65536", math.MaxInt)},
		{name: "duration", set: func() error { return Duration("x", "ack wait", &d, time.Second, time.Second, time.Hour) }},
		{name: "duration below", set: func() error { return Duration("x", "ack wait", &d, time.Nanosecond, time.Second, time.Hour) }, want: "x: relay: invalid option: ack wait 1ns, must be from 1s to 1h0m0s"},
		{name: "duration above", set: func() error { return Duration("x", "ack wait", &d, math.MaxInt64, time.Second, time.Hour) }, want: "x: relay: invalid option: ack wait 2562047h47m16.854775807s, must be from 1s to 1h0m0s"},
		{name: "start id $", set: func() error { return StreamID("x", &s, "$") }},
		{name: "start id 0", set: func() error { return StreamID("x", &s, "0") }},
		{name: "start id 0-0", set: func() error { return StreamID("x", &s, "0-0") }},
		{name: "start id ms-seq", set: func() error { return StreamID("x", &s, "1700000000000-3") }},
		{name: "start id ms", set: func() error { return StreamID("x", &s, "1700000000000") }},
		{name: "start id max", set: func() error { return StreamID("x", &s, "18446744073709551615-18446744073709551615") }},
		{name: "start id garbage", set: func() error { return StreamID("x", &s, "garbage") }, want: `x: relay: invalid option: start id "garbage", want "$", "<ms>" or "<ms>-<seq>"`},
		{name: "start id empty", set: func() error { return StreamID("x", &s, "") }, want: `x: relay: invalid option: start id "", want "$", "<ms>" or "<ms>-<seq>"`},
		{name: "start id signed", set: func() error { return StreamID("x", &s, "+1") }, want: `x: relay: invalid option: start id "+1", want "$", "<ms>" or "<ms>-<seq>"`},
		{name: "start id empty seq", set: func() error { return StreamID("x", &s, "1-") }, want: `x: relay: invalid option: start id "1-", want "$", "<ms>" or "<ms>-<seq>"`},
		{name: "start id too big", set: func() error { return StreamID("x", &s, "18446744073709551616") }, want: `x: relay: invalid option: start id "18446744073709551616", want "$", "<ms>" or "<ms>-<seq>"`},
		{name: "start id auto seq", set: func() error { return StreamID("x", &s, "1-*") }, want: `x: relay: invalid option: start id "1-*", want "$", "<ms>" or "<ms>-<seq>"`},
		{name: "max deliver", set: func() error { return MaxDeliver("x", &p, 1) }},
		{name: "zero max deliver", set: func() error { return MaxDeliver("x", &p, 0) }, want: "x: relay: invalid option: max deliver 0, must be at least 1"},
		{name: "backoff", set: func() error { return Backoff("x", &p, time.Second, time.Second) }},
		{name: "zero min backoff", set: func() error { return Backoff("x", &p, 0, time.Second) }, want: "x: relay: invalid option: min backoff 0s, must be at least 1ms"},
		{name: "min backoff of 1ns, a busy loop", set: func() error { return Backoff("x", &p, time.Nanosecond, time.Second) }, want: "x: relay: invalid option: min backoff 1ns, must be at least 1ms"},
		{name: "backoff up to max duration", set: func() error { return Backoff("x", &p, 100*time.Millisecond, math.MaxInt64) }},
		{name: "max below min", set: func() error { return Backoff("x", &p, time.Second, time.Millisecond) }, want: "x: relay: invalid option: max backoff 1ms is below min backoff 1s"},
		{name: "dead-letter topic", set: func() error { return DeadLetterTopic("x", &p, delivery.DefaultDeadLetterTopic) }},
		{name: "nil dead-letter topic", set: func() error { return DeadLetterTopic("x", &p, nil) }, want: "x: relay: invalid option: nil dead-letter topic function"},
		{name: "logger", set: func() error { return Logger("x", &l, slog.Default()) }},
		{name: "nil logger", set: func() error { return Logger("x", &l, nil) }, want: "x: relay: invalid option: nil logger"},
	}
	for _, tt := range tests {
		err := tt.set()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tt.name, err)
		case tt.want != "" && (!errors.Is(err, relay.ErrInvalidOption) || err.Error() != tt.want):
			t.Errorf("%s: error %v, want %q wrapping relay.ErrInvalidOption", tt.name, err, tt.want)
		}
	}
}

func TestApplyRefusesNilOption(t *testing.T) {
	t.Parallel()
	var n int
	set := func(c *int) error { *c = 1; return nil }
	err := Apply("x", &n, []func(*int) error{set, nil})
	if !errors.Is(err, relay.ErrInvalidOption) || err.Error() != "x: relay: invalid option: nil option (number 2)" {
		t.Fatalf("Apply with a nil option = %v, want ErrInvalidOption naming option 2", err)
	}
	if err := Apply("x", &n, []func(*int) error{set}); err != nil || n != 1 {
		t.Fatalf("Apply = %v, n = %d; want nil, 1", err, n)
	}
}
