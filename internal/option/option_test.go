package option

import (
	"errors"
	"log/slog"
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
		{name: "zero concurrency", set: func() error { return Concurrency("x", &n, 0) }, want: "x: relay: invalid option: concurrency 0, must be at least 1"},
		{name: "zero prefetch", set: func() error { return Prefetch("x", &n, 0) }},
		{name: "negative prefetch", set: func() error { return Prefetch("x", &n, -1) }, want: "x: relay: invalid option: prefetch -1, must not be negative"},
		{name: "max deliver", set: func() error { return MaxDeliver("x", &p, 1) }},
		{name: "zero max deliver", set: func() error { return MaxDeliver("x", &p, 0) }, want: "x: relay: invalid option: max deliver 0, must be at least 1"},
		{name: "backoff", set: func() error { return Backoff("x", &p, time.Second, time.Second) }},
		{name: "zero min backoff", set: func() error { return Backoff("x", &p, 0, time.Second) }, want: "x: relay: invalid option: min backoff 0s, must be positive"},
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
