package retrier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/go-relay/relay"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBroker is a minimal relay.Broker for white-box tests: Publish records the
// message and calls the topic's handlers synchronously, returning after them,
// and records what each handler returned. It has no retries of its own.
type syncBroker struct {
	mu         sync.Mutex
	subs       map[string][]relay.Handler
	published  []publishedMsg
	results    []error
	closeCalls int
	closed     bool
	// publishErr, when set, decides the error of each Publish before it is
	// recorded.
	publishErr func(topic string) error
}

type publishedMsg struct {
	topic   string
	payload []byte
}

func newSyncBroker() *syncBroker { return &syncBroker{subs: map[string][]relay.Handler{}} }

func (b *syncBroker) Publish(ctx context.Context, topic string, payload []byte) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("sync: publish %q: %w", topic, relay.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		b.mu.Unlock()
		return fmt.Errorf("sync: publish %q: %w", topic, err)
	}
	if b.publishErr != nil {
		if err := b.publishErr(topic); err != nil {
			b.mu.Unlock()
			return err
		}
	}
	b.published = append(b.published, publishedMsg{topic, append([]byte(nil), payload...)})
	handlers := append([]relay.Handler(nil), b.subs[topic]...)
	b.mu.Unlock()
	for _, h := range handlers {
		err := h(payload)
		b.mu.Lock()
		b.results = append(b.results, err)
		b.mu.Unlock()
	}
	return nil
}

func (b *syncBroker) Subscribe(topic string, h relay.Handler) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("sync: subscribe %q: %w", topic, relay.ErrClosed)
	}
	b.subs[topic] = append(b.subs[topic], h)
	return nil
}

func (b *syncBroker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closeCalls++
	b.closed = true
	return nil
}

// on returns the payloads published to topic so far.
func (b *syncBroker) on(topic string) [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out [][]byte
	for _, m := range b.published {
		if m.topic == topic {
			out = append(out, m.payload)
		}
	}
	return out
}

func (b *syncBroker) handlerResults() []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]error(nil), b.results...)
}

// nativeBroker reports native retries.
type nativeBroker struct{ *syncBroker }

func (nativeBroker) HandlesRetries() bool { return true }

// plainRetrier implements NativeRetrier but reports false.
type plainRetrier struct{ *syncBroker }

func (plainRetrier) HandlesRetries() bool { return false }

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// newRetrier wraps inner with short backoffs and a quiet logger, and closes it
// at the end of the test.
func newRetrier(t *testing.T, inner relay.Broker, opts ...Option) relay.Broker {
	t.Helper()
	opts = append([]Option{WithBackoff(time.Millisecond, 2*time.Millisecond), WithLogger(quietLogger)}, opts...)
	b, err := New(inner, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func subscribe(t *testing.T, b relay.Broker, topic string, h relay.Handler) {
	t.Helper()
	if err := b.Subscribe(topic, h); err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
}

func publish(t *testing.T, b relay.Broker, topic string, payload []byte) {
	t.Helper()
	if err := b.Publish(context.Background(), topic, payload); err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
}

// eventually polls cond every few milliseconds until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

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

func TestPermanentErrorIsDeadLetteredAtOnce(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{name: "wrapped with fmt.Errorf", err: fmt.Errorf("bad input: %w", relay.ErrPermanent)},
		{name: "wrapped with relay.Permanent", err: relay.Permanent(errors.New("bad input"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := newSyncBroker()
			b := newRetrier(t, inner, WithMaxDeliver(5),
				WithDeadLetterTopic(func(topic string) string { return "dlq." + topic }))
			var calls int
			subscribe(t, b, "orders", func([]byte) error { calls++; return tt.err })
			publish(t, b, "orders", []byte("x"))
			if calls != 1 {
				t.Errorf("handler called %d times, want 1", calls)
			}
			if dead := inner.on("dlq.orders"); len(dead) != 1 || string(dead[0]) != "x" {
				t.Errorf("dead letters on dlq.orders = %q, want [x]", dead)
			}
		})
	}
}

func TestDeadLetterLogRecordsAttemptsAndLastError(t *testing.T) {
	var logs safeBuffer
	inner := newSyncBroker()
	b := newRetrier(t, inner, WithMaxDeliver(2), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	subscribe(t, b, "orders", func([]byte) error { return errors.New("db down") })
	publish(t, b, "orders", []byte("x"))
	out := logs.String()
	for _, want := range []string{"level=WARN", "topic=orders", "dead_letter_topic=orders.dead", "attempts=2", `error="db down"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
}

func TestDeadLetterPublishFailureIsRetriedNotLost(t *testing.T) {
	inner := newSyncBroker()
	var failures atomic.Int32
	inner.publishErr = func(topic string) error {
		if topic == "orders.dead" && failures.Add(1) <= 3 {
			return errors.New("broker unavailable")
		}
		return nil
	}
	var reported []error
	var mu sync.Mutex
	b := newRetrier(t, inner, WithMaxDeliver(1), WithErrorHandler(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, err)
	}))
	subscribe(t, b, "orders", func([]byte) error { return errors.New("boom") })
	publish(t, b, "orders", []byte("x"))
	if dead := inner.on("orders.dead"); len(dead) != 1 || string(dead[0]) != "x" {
		t.Fatalf("dead letters = %q, want [x] after the publish recovered", dead)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 3 {
		t.Fatalf("error handler got %d errors, want 3: %v", len(reported), reported)
	}
	if msg := reported[0].Error(); !strings.Contains(msg, "broker unavailable") || !strings.Contains(msg, "orders.dead") {
		t.Errorf("reported error %q does not say what failed", msg)
	}
	if res := inner.handlerResults(); len(res) != 1 || res[0] != nil {
		t.Errorf("wrapped handler returned %v, want [nil]", res)
	}
}

func TestSubscribeRefusesAnInvalidDeadLetterTopic(t *testing.T) {
	// Before, the message was handed back to the wrapped broker after every
	// failed dead-letter publish, and a plain queue redelivered it with a
	// fresh attempt budget: the handler ran without bound.
	inner := newSyncBroker()
	b := newRetrier(t, inner, WithMaxDeliver(1), WithDeadLetterTopic(func(string) string { return "bad topic" }))
	if err := b.Subscribe("orders", func([]byte) error { return errors.New("boom") }); !errors.Is(err, relay.ErrInvalidTopic) {
		t.Fatalf("Subscribe = %v, want an error wrapping ErrInvalidTopic", err)
	}
	if len(inner.subs) != 0 {
		t.Errorf("the wrapped broker got a subscription")
	}
}

// closeWhileBlocked starts a publish whose delivery blocks in the retrier,
// waits until blocked reports true, closes the retrier and returns how long
// Close took and what the wrapped handler returned.
func closeWhileBlocked(t *testing.T, inner *syncBroker, b relay.Broker, blocked func() bool) (time.Duration, error) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := b.Publish(context.Background(), "orders", []byte("x")); err != nil {
			t.Errorf("Publish: %v", err)
		}
	}()
	eventually(t, 5*time.Second, "the delivery to block", blocked)
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	took := time.Since(start)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the delivery did not end after Close")
	}
	res := inner.handlerResults()
	if len(res) != 1 {
		t.Fatalf("wrapped handler results = %v, want one", res)
	}
	return took, res[0]
}

func TestCloseInterruptsBackoff(t *testing.T) {
	inner := newSyncBroker()
	b, err := New(inner, WithBackoff(time.Minute, time.Minute), WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	subscribe(t, b, "orders", func([]byte) error { calls.Add(1); return errors.New("boom") })
	took, res := closeWhileBlocked(t, inner, b, func() bool { return calls.Load() == 1 })
	if took > time.Second {
		t.Errorf("Close took %v during a 1-minute backoff, want under 1s", took)
	}
	if !errors.Is(res, relay.ErrClosed) {
		t.Errorf("wrapped handler returned %v, want an error wrapping ErrClosed so the message is kept", res)
	}
	if calls.Load() != 1 {
		t.Errorf("handler called %d times, want 1", calls.Load())
	}
	if dead := inner.on("orders.dead"); len(dead) != 0 {
		t.Errorf("dead letters = %q, want none: Close is not a failure", dead)
	}
	if inner.closeCalls != 1 {
		t.Errorf("wrapped broker closed %d times, want 1", inner.closeCalls)
	}
}

func TestCloseInterruptsDeadLetterRetry(t *testing.T) {
	inner := newSyncBroker()
	var tries atomic.Int32
	inner.publishErr = func(topic string) error {
		if topic == "orders.dead" {
			tries.Add(1)
			return errors.New("broker unavailable")
		}
		return nil
	}
	b, err := New(inner, WithMaxDeliver(1), WithBackoff(time.Minute, time.Minute), WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	subscribe(t, b, "orders", func([]byte) error { return errors.New("boom") })
	took, res := closeWhileBlocked(t, inner, b, func() bool { return tries.Load() == 1 })
	if took > time.Second {
		t.Errorf("Close took %v, want under 1s", took)
	}
	if res == nil || !errors.Is(res, relay.ErrClosed) {
		t.Errorf("wrapped handler returned %v, want an error: the message was neither handled nor dead-lettered", res)
	}
}

func TestCloseWaitsForRunningHandler(t *testing.T) {
	inner := newSyncBroker()
	b, err := New(inner, WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	subscribe(t, b, "orders", func([]byte) error { close(started); <-release; return nil })
	published := make(chan struct{})
	go func() {
		defer close(published)
		if err := b.Publish(context.Background(), "orders", nil); err != nil {
			t.Errorf("Publish: %v", err)
		}
	}()
	<-started
	closed := make(chan error)
	go func() { closed <- b.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a handler was running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	<-published
	if res := inner.handlerResults(); len(res) != 1 || res[0] != nil {
		t.Errorf("wrapped handler returned %v, want [nil]", res)
	}
}

func TestDeliveryAfterCloseReturnsError(t *testing.T) {
	inner := newSyncBroker()
	b, err := New(inner, WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	subscribe(t, b, "orders", func([]byte) error { calls++; return nil })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// The wrapped broker may still deliver between the retrier's Close and its
	// own: simulate it by calling the registered handler directly.
	if err := inner.subs["orders"][0]([]byte("x")); !errors.Is(err, relay.ErrClosed) {
		t.Errorf("wrapped handler after Close returned %v, want ErrClosed", err)
	}
	if calls != 0 {
		t.Errorf("user handler called %d times after Close", calls)
	}
}

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

// mustNew wraps inner without options and closes it at the end of the test.
func mustNew(t *testing.T, inner relay.Broker) relay.Broker {
	t.Helper()
	b, err := New(inner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
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

func TestClosedBrokerReturnsErrClosed(t *testing.T) {
	inner := newSyncBroker()
	b, err := New(inner, WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{name: "publish", call: func() error { return b.Publish(context.Background(), "orders", nil) }},
		{name: "subscribe", call: func() error { return b.Subscribe("orders", func([]byte) error { return nil }) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, relay.ErrClosed) || !strings.HasPrefix(err.Error(), "retrier: "+tt.name) {
				t.Fatalf("%s after Close = %v, want \"retrier: %s ...\" wrapping ErrClosed", tt.name, err, tt.name)
			}
		})
	}
}

func TestCloseIsIdempotentAndConcurrent(t *testing.T) {
	inner := newSyncBroker()
	b, err := New(inner, WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := b.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}
	if inner.closeCalls != 1 {
		t.Errorf("wrapped broker closed %d times, want 1", inner.closeCalls)
	}
}

func TestCloseReturnsWrappedBrokerError(t *testing.T) {
	b, err := New(failingClose{newSyncBroker()}, WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Close = %v, want the wrapped broker's error", err)
	}
}

type failingClose struct{ *syncBroker }

func (failingClose) Close() error { return errors.New("disk full") }

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

// safeBuffer is a bytes.Buffer safe for concurrent writes.
type safeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
