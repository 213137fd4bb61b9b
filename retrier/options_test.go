package retrier

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-relay/relay"
)

func TestNativeBrokerIsPassedThrough(t *testing.T) {
	inner := nativeBroker{newSyncBroker()}
	b, err := New(inner)
	if err != nil {
		t.Fatal(err)
	}
	if b != relay.Broker(inner) {
		t.Fatalf("New returned %T, want the native broker itself", b)
	}
	var calls int
	subscribe(t, b, "orders", func([]byte) error { calls++; return errors.New("boom") })
	publish(t, b, "orders", []byte("x"))
	if calls != 1 {
		t.Errorf("handler called %d times, want 1: no retry loop on a native broker", calls)
	}
	if res := inner.handlerResults(); len(res) != 1 || res[0] == nil {
		t.Errorf("broker's handler returned %v, want the handler's error unchanged", res)
	}
	if dead := inner.on("orders.dead"); len(dead) != 0 {
		t.Errorf("dead letters = %q, want none from the retrier", dead)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestHandlesRetries(t *testing.T) {
	tests := []struct {
		name        string
		inner       relay.Broker
		wantWrapped bool
	}{
		{name: "broker without NativeRetrier is wrapped", inner: newSyncBroker(), wantWrapped: true},
		{name: "broker reporting false is wrapped", inner: plainRetrier{newSyncBroker()}, wantWrapped: true},
		{name: "broker reporting true is returned as is", inner: nativeBroker{newSyncBroker()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(tt.inner) // no options: a native broker refuses them
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			nr, ok := b.(NativeRetrier)
			if !ok || !nr.HandlesRetries() {
				t.Fatalf("New returned %T, want a NativeRetrier reporting true", b)
			}
			if _, wrapped := b.(*broker); wrapped != tt.wantWrapped {
				t.Errorf("wrapped = %v, want %v", wrapped, tt.wantWrapped)
			}
			if again, err := New(b); err != nil || again != b {
				t.Errorf("New on a retrier = %T, %v; want it unchanged", again, err)
			}
		})
	}
}

func TestPlainRetrierGetsRetryLoop(t *testing.T) {
	inner := plainRetrier{newSyncBroker()}
	b := newRetrier(t, inner)
	var calls int
	subscribe(t, b, "orders", func([]byte) error { calls++; return errors.New("boom") })
	publish(t, b, "orders", []byte("x"))
	if calls != DefaultMaxDeliver {
		t.Errorf("handler called %d times, want %d", calls, DefaultMaxDeliver)
	}
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	tests := []struct {
		name  string
		inner relay.Broker
		opts  []Option
	}{
		{name: "nil broker", inner: nil},
		{name: "zero max deliver", opts: []Option{WithMaxDeliver(0)}},
		{name: "negative max deliver", opts: []Option{WithMaxDeliver(-1)}},
		{name: "zero min backoff", opts: []Option{WithBackoff(0, time.Second)}},
		{name: "negative min backoff", opts: []Option{WithBackoff(-time.Second, time.Second)}},
		{name: "max backoff below min", opts: []Option{WithBackoff(time.Second, time.Millisecond)}},
		{name: "nil dead-letter topic function", opts: []Option{WithDeadLetterTopic(nil)}},
		{name: "nil logger", opts: []Option{WithLogger(nil)}},
		{name: "nil error handler", opts: []Option{WithErrorHandler(nil)}},
		{name: "invalid option for a native broker", inner: nativeBroker{newSyncBroker()}, opts: []Option{WithMaxDeliver(0)}},
		{name: "nil option", opts: []Option{WithMaxDeliver(2), nil}},
		{name: "min backoff of 1ns, a busy loop", opts: []Option{WithBackoff(time.Nanosecond, time.Second)}},
		{name: "valid option for a native broker, which would ignore it", inner: nativeBroker{newSyncBroker()}, opts: []Option{WithMaxDeliver(4)}},
		{name: "logger for a native broker", inner: nativeBroker{newSyncBroker()}, opts: []Option{WithLogger(quietLogger)}},
		{name: "options for a retrier, which handles retries", inner: mustNew(t, newSyncBroker()), opts: []Option{WithMaxDeliver(4)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := tt.inner
			if inner == nil && tt.name != "nil broker" {
				inner = newSyncBroker()
			}
			b, err := New(inner, tt.opts...)
			if !errors.Is(err, relay.ErrInvalidOption) {
				t.Fatalf("New = %v, %v; want an error wrapping ErrInvalidOption", b, err)
			}
			if !strings.HasPrefix(err.Error(), "retrier: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// TestNewRefusesOptionsForNativeBroker guards retrier.New(b,
// WithMaxDeliver(4)) on a natively retrying broker, which returned b and
// silently dropped the option: the caller believed in 4 deliveries and got
// b's own count.
func TestNewRefusesOptionsForNativeBroker(t *testing.T) {
	inner := nativeBroker{newSyncBroker()}
	b, err := New(inner, WithMaxDeliver(4))
	if !errors.Is(err, relay.ErrInvalidOption) || b != nil {
		t.Fatalf("New(native, WithMaxDeliver(4)) = %v, %v; want nil and an error wrapping ErrInvalidOption", b, err)
	}
	if !strings.Contains(err.Error(), "configure the broker itself") {
		t.Errorf("error %q does not say to configure the broker itself", err)
	}
	// b is left open and usable.
	var calls int
	subscribe(t, inner, "orders", func([]byte) error { calls++; return nil })
	publish(t, inner, "orders", []byte("x"))
	if calls != 1 {
		t.Errorf("inner broker delivered %d times after the refused New, want 1", calls)
	}
}

func TestValidOptionsAreAccepted(t *testing.T) {
	newRetrier(t, newSyncBroker(),
		WithMaxDeliver(1), WithBackoff(time.Second, time.Second),
		WithDeadLetterTopic(func(topic string) string { return topic + ".dlq" }),
		WithErrorHandler(func(error) {}))
}

func TestSubscribeRejectsBadInput(t *testing.T) {
	tests := []struct {
		name    string
		topic   string
		handler relay.Handler
		want    error
	}{
		{name: "empty topic", topic: "", handler: func([]byte) error { return nil }, want: relay.ErrInvalidTopic},
		{name: "wildcard topic", topic: "orders.*", handler: func([]byte) error { return nil }, want: relay.ErrInvalidTopic},
		{name: "nil handler", topic: "orders", handler: nil, want: relay.ErrNilHandler},
		{name: "topic whose dead-letter topic is too long", topic: strings.Repeat("a", relay.MaxTopicLength), handler: func([]byte) error { return nil }, want: relay.ErrInvalidTopic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := newSyncBroker()
			b := newRetrier(t, inner)
			if err := b.Subscribe(tt.topic, tt.handler); !errors.Is(err, tt.want) {
				t.Fatalf("Subscribe = %v, want %v", err, tt.want)
			}
			if len(inner.subs) != 0 {
				t.Errorf("the wrapped broker got a subscription")
			}
		})
	}
}
