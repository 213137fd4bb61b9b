package redisstreams

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []Option
		wantErr string // substring; empty for valid
	}{
		{"defaults", nil, ""},
		{"every option set", []Option{WithGroup("g"), WithMaxDeliver(5), WithBackoff(time.Millisecond, time.Second),
			WithDeadLetterTopic(func(s string) string { return s + ".dlq" }), WithConcurrency(1), WithConsumer("c"),
			WithClaimTimeout(time.Second), WithBlockTimeout(time.Millisecond), WithMaxLen(1000), WithStartID(StartNewest),
			WithLogger(testLogger())}, ""},
		{"nil option", []Option{nil}, "nil option"},
		{"negative prefetch", []Option{WithPrefetch(-1)}, "prefetch"},
		{"empty group", []Option{WithGroup("")}, "empty group"},
		{"zero max deliver", []Option{WithMaxDeliver(0)}, "max deliver"},
		{"negative backoff", []Option{WithBackoff(-time.Second, time.Second)}, "min backoff"},
		{"max backoff below min", []Option{WithBackoff(time.Second, time.Millisecond)}, "max backoff"},
		{"nil dead-letter function", []Option{WithDeadLetterTopic(nil)}, "dead-letter"},
		{"zero concurrency", []Option{WithConcurrency(0)}, "concurrency"},
		{"empty consumer", []Option{WithConsumer("")}, "consumer"},
		{"claim timeout too small", []Option{WithClaimTimeout(time.Millisecond)}, "claim timeout"},
		{"zero block timeout", []Option{WithBlockTimeout(0)}, "block timeout"},
		{"negative max length", []Option{WithMaxLen(-1)}, "max length"},
		{"empty start id", []Option{WithStartID("")}, "start id"},
		{"nil logger", []Option{WithLogger(nil)}, "logger"},
		{"nil tracer provider", []Option{WithTracerProvider(nil)}, "nil tracer provider"},
		{"nil meter provider", []Option{WithMeterProvider(nil)}, "nil meter provider"},
		{"nil propagators", []Option{WithPropagators(nil)}, "nil propagators"},
		{"nil option after a valid one", []Option{WithGroup("g"), nil}, "nil option"},
		{"concurrency of max int", []Option{WithConcurrency(math.MaxInt)}, "concurrency"},
		{"concurrency over the bound", []Option{WithConcurrency(relay.MaxConcurrency + 1)}, "concurrency"},
		{"concurrency at the bound", []Option{WithConcurrency(relay.MaxConcurrency)}, ""},
		{"prefetch of max int, overflowing concurrency+prefetch", []Option{WithPrefetch(math.MaxInt)}, "prefetch"},
		{"prefetch over the bound", []Option{WithPrefetch(relay.MaxPrefetch + 1)}, "prefetch"},
		{"prefetch at the bound", []Option{WithPrefetch(relay.MaxPrefetch)}, ""},
		{"min backoff of 1ns, a busy loop", []Option{WithBackoff(time.Nanosecond, time.Second)}, "min backoff"},
		{"backoff up to max duration", []Option{WithBackoff(100*time.Millisecond, math.MaxInt64)}, ""},
		{"claim timeout of max duration, overflowing the idle-consumer timeout", []Option{WithClaimTimeout(math.MaxInt64)}, "claim timeout"},
		{"claim timeout over the maximum", []Option{WithClaimTimeout(MaxClaimTimeout + 1)}, "claim timeout"},
		{"claim timeout at the maximum", []Option{WithClaimTimeout(MaxClaimTimeout)}, ""},
		{"block timeout of max duration", []Option{WithBlockTimeout(math.MaxInt64)}, "block timeout"},
		{"block timeout over the maximum", []Option{WithBlockTimeout(MaxBlockTimeout + 1)}, "block timeout"},
		{"max length of max int64", []Option{WithMaxLen(math.MaxInt64)}, ""},
		{"start id garbage", []Option{WithStartID("garbage")}, `start id "garbage"`},
		{"start id with auto sequence", []Option{WithStartID("1-*")}, "start id"},
		{"start id with a sign", []Option{WithStartID("-1")}, "start id"},
		{"start id with spaces", []Option{WithStartID(" 0")}, "start id"},
		{"start id past uint64", []Option{WithStartID("18446744073709551616-0")}, "start id"},
		{"start id oldest", []Option{WithStartID(StartOldest)}, ""},
		{"start id newest", []Option{WithStartID(StartNewest)}, ""},
		{"start id 0-0", []Option{WithStartID("0-0")}, ""},
		{"start id ms", []Option{WithStartID("1700000000000")}, ""},
		{"start id ms-seq", []Option{WithStartID("1700000000000-3")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newConfig(tc.opts)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("newConfig: %v", err)
				}
				return
			}
			if !errors.Is(err, relay.ErrInvalidOption) || !strings.Contains(err.Error(), tc.wantErr) ||
				!strings.HasPrefix(err.Error(), "redisstreams: ") {
				t.Fatalf("newConfig error = %v, want ErrInvalidOption mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestNilClient(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func() error
	}{
		{"NewBroker", func() error { _, err := NewBroker(nil); return err }},
		{"NewPublisher", func() error { _, err := NewPublisher(nil); return err }},
		{"NewSubscriber", func() error { _, err := NewSubscriber(nil); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.make(); !errors.Is(err, relay.ErrInvalidOption) {
				t.Fatalf("error = %v, want ErrInvalidOption", err)
			}
		})
	}
}

// The exported defaults are literals (go doc shows no internal name) and
// must stay those of the shared policy.
func TestDefaultsMatchSharedPolicy(t *testing.T) {
	p := delivery.DefaultPolicy()
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"DefaultMaxDeliver", DefaultMaxDeliver, p.MaxDeliver},
		{"DefaultMinBackoff", DefaultMinBackoff, p.MinBackoff},
		{"DefaultMaxBackoff", DefaultMaxBackoff, p.MaxBackoff},
		{"DefaultMaxDeliver (delivery)", DefaultMaxDeliver, delivery.DefaultMaxDeliver},
		{"DefaultMinBackoff (delivery)", DefaultMinBackoff, delivery.DefaultMinBackoff},
		{"DefaultMaxBackoff (delivery)", DefaultMaxBackoff, delivery.DefaultMaxBackoff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
			}
		})
	}
}
