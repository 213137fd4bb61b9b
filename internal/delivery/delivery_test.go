package delivery

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-relay/relay"
)

func TestBackoffBoundsAndGrowth(t *testing.T) {
	p := Policy{MaxDeliver: 10, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, DeadLetterTopic: DefaultDeadLetterTopic}
	tests := []struct {
		name     string
		attempt  int
		min, max time.Duration
	}{
		{name: "first failure waits min to twice min", attempt: 1, min: 100 * time.Millisecond, max: 200 * time.Millisecond},
		{name: "second failure doubles", attempt: 2, min: 200 * time.Millisecond, max: 400 * time.Millisecond},
		{name: "third failure doubles again", attempt: 3, min: 400 * time.Millisecond, max: 800 * time.Millisecond},
		{name: "jitter cut at max", attempt: 4, min: 800 * time.Millisecond, max: time.Second},
		{name: "capped at max", attempt: 9, min: time.Second, max: time.Second},
		{name: "huge attempt does not overflow", attempt: 1 << 20, min: time.Second, max: time.Second},
		{name: "zero attempt counts as the first", attempt: 0, min: 100 * time.Millisecond, max: 200 * time.Millisecond},
		{name: "negative attempt counts as the first", attempt: -5, min: 100 * time.Millisecond, max: 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 200 {
				if d := p.Backoff(tt.attempt); d < tt.min || d > tt.max {
					t.Fatalf("Backoff(%d) = %v, want within [%v, %v]", tt.attempt, d, tt.min, tt.max)
				}
			}
		})
	}
}

// TestBackoffNeverBelowMin guards WithBackoff(min, max) meaning min: the
// equal jitter of old drew the first wait from [min/2, min].
func TestBackoffNeverBelowMin(t *testing.T) {
	p := Policy{MinBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second}
	for attempt := 1; attempt <= 10; attempt++ {
		for range 500 {
			if d := p.Backoff(attempt); d < p.MinBackoff {
				t.Fatalf("Backoff(%d) = %v, below min %v", attempt, d, p.MinBackoff)
			}
		}
	}
}

// TestBackoffDoesNotOverflow guards WithBackoff(100ms, math.MaxInt64), which
// crashed the process at attempt ~38: the doubled step overflowed and
// rand.N panicked on a negative bound.
func TestBackoffDoesNotOverflow(t *testing.T) {
	bounds := []struct {
		name     string
		min, max time.Duration
	}{
		{name: "100ms to max duration", min: 100 * time.Millisecond, max: math.MaxInt64},
		{name: "1ns to max duration", min: 1, max: math.MaxInt64},
		{name: "max duration both", min: math.MaxInt64, max: math.MaxInt64},
		{name: "half max duration to max duration", min: math.MaxInt64/2 + 1, max: math.MaxInt64},
	}
	attempts := []int{1, 2, 37, 38, 39, 62, 63, 64, 65, 1000, math.MaxInt, 0, -1, math.MinInt}
	for _, b := range bounds {
		t.Run(b.name, func(t *testing.T) {
			p := Policy{MinBackoff: b.min, MaxBackoff: b.max}
			for _, a := range attempts {
				for range 50 {
					// Bounds that hold for the old rule too: this test is
					// about the panic; TestBackoffNeverBelowMin about min.
					if d := p.Backoff(a); d < b.min/2 || d > b.max {
						t.Fatalf("Backoff(%d) = %v, want within [%v, %v]", a, d, b.min, b.max)
					}
				}
			}
		})
	}
}

func TestDecide(t *testing.T) {
	p := DefaultPolicy()
	tests := []struct {
		name    string
		attempt int
		err     error
		want    Action
	}{
		{name: "success acks", attempt: 1, err: nil, want: Ack},
		{name: "first failure retries", attempt: 1, err: errors.New("x"), want: Retry},
		{name: "failure below max retries", attempt: 2, err: errors.New("x"), want: Retry},
		{name: "failure at max dead-letters", attempt: 3, err: errors.New("x"), want: DeadLetter},
		{name: "permanent dead-letters at once", attempt: 1, err: fmt.Errorf("bad: %w", relay.ErrPermanent), want: DeadLetter},
		{name: "success on last attempt acks", attempt: 3, err: nil, want: Ack},
		{name: "stopped on last attempt is retried", attempt: 3, err: ErrStopped, want: Retry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := p.Decide(tt.attempt, tt.err); got != tt.want {
				t.Fatalf("Decide(%d, %v) = %v, want %v", tt.attempt, tt.err, got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Policy)
	}{
		{name: "zero max deliver", mutate: func(p *Policy) { p.MaxDeliver = 0 }},
		{name: "negative max deliver", mutate: func(p *Policy) { p.MaxDeliver = -1 }},
		{name: "zero min backoff", mutate: func(p *Policy) { p.MinBackoff = 0 }},
		{name: "min backoff of 1ns, a busy loop", mutate: func(p *Policy) { p.MinBackoff = time.Nanosecond }},
		{name: "max below min", mutate: func(p *Policy) { p.MaxBackoff = p.MinBackoff / 2 }},
		{name: "nil dead-letter topic", mutate: func(p *Policy) { p.DeadLetterTopic = nil }},
	}
	if err := DefaultPolicy().Validate("x"); err != nil {
		t.Fatalf("default policy invalid: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultPolicy()
			tt.mutate(&p)
			if err := p.Validate("x"); !errors.Is(err, relay.ErrInvalidOption) {
				t.Fatalf("Validate = %v, want ErrInvalidOption", err)
			}
		})
	}
}

type recordingSettler struct {
	calls      []string
	publishErr error
	dlTopic    string
	dl         Message
}

func (r *recordingSettler) Ack(context.Context) error { r.calls = append(r.calls, "ack"); return nil }
func (r *recordingSettler) Retry(context.Context, time.Duration) error {
	r.calls = append(r.calls, "retry")
	return nil
}
func (r *recordingSettler) PublishDeadLetter(_ context.Context, topic string, m Message) error {
	r.calls = append(r.calls, "publish")
	r.dlTopic, r.dl = topic, m
	return r.publishErr
}

func TestSettleDeadLetterPublishedBeforeAck(t *testing.T) {
	d := &Delivery{Topic: "orders", ID: "7", Attempt: 3, Message: Message{UUID: "u1", Metadata: map[string]string{"k": "v"}, Payload: []byte{0, 1, 2}}}
	s := &recordingSettler{}
	if err := DefaultPolicy().Settle(context.Background(), d, errors.New("boom"), s); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(s.calls) != "[publish ack]" {
		t.Fatalf("calls = %v, want [publish ack]", s.calls)
	}
	if s.dlTopic != "orders.dead" || s.dl.UUID != "u1" || string(s.dl.Payload) != "\x00\x01\x02" {
		t.Fatalf("dead letter = %q %+v", s.dlTopic, s.dl)
	}
	want := map[string]string{"k": "v", relay.MetadataSourceTopic: "orders", relay.MetadataSourceID: "7", relay.MetadataAttempts: "3", relay.MetadataReason: "boom"}
	if fmt.Sprint(s.dl.Metadata) != fmt.Sprint(want) {
		t.Fatalf("metadata = %v, want %v", s.dl.Metadata, want)
	}
	if _, ok := d.Message.Metadata[relay.MetadataReason]; ok {
		t.Fatal("Settle changed the source message's metadata")
	}
}

func TestSettleFailedDeadLetterIsRetriedNotAcked(t *testing.T) {
	d := &Delivery{Topic: "orders", ID: "7", Attempt: 3}
	s := &recordingSettler{publishErr: errors.New("down")}
	if err := DefaultPolicy().Settle(context.Background(), d, errors.New("boom"), s); err == nil {
		t.Fatal("Settle hid the dead-letter publish failure")
	}
	if fmt.Sprint(s.calls) != "[publish retry]" {
		t.Fatalf("calls = %v, want [publish retry]", s.calls)
	}
}

func TestSettleDecodeErrorGoesToDeadLetter(t *testing.T) {
	d := &Delivery{Topic: "orders", ID: "7", Attempt: 1, DecodeErr: errors.New("bad msgpack")}
	s := &recordingSettler{}
	if err := DefaultPolicy().Settle(context.Background(), d, nil, s); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(s.calls) != "[publish ack]" || s.dl.Metadata[relay.MetadataReason] == "" {
		t.Fatalf("calls = %v, metadata %v", s.calls, s.dl.Metadata)
	}
}

type nilPointerError struct{ msg string }

func (e *nilPointerError) Error() string { return e.msg }

func TestCallSurvivesHandlerMisbehaviour(t *testing.T) {
	t.Run("an error whose Error method panics becomes a PanicError", func(t *testing.T) {
		var typedNil *nilPointerError
		err := Call(func([]byte) error { return typedNil }, nil)
		var pe *PanicError
		if !errors.As(err, &pe) {
			t.Fatalf("Call = %#v, want a *PanicError", err)
		}
		_ = DeadLetterMessage(&Delivery{Topic: "t"}, err) // must not panic
	})
	t.Run("the handler gets its own copy of the payload", func(t *testing.T) {
		payload := []byte("original")
		_ = Call(func(p []byte) error { copy(p, "XXXXXXXX"); return nil }, payload)
		if string(payload) != "original" {
			t.Fatalf("payload changed to %q by the handler", payload)
		}
	})
	t.Run("runtime.Goexit still settles the delivery", func(t *testing.T) {
		got := make(chan error, 2)
		go CallSettled(func([]byte) error { runtime.Goexit(); return nil }, nil, func(err error) { got <- err })
		select {
		case err := <-got:
			if !errors.Is(err, ErrGoexit) {
				t.Fatalf("settled with %v, want ErrGoexit", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a handler that called runtime.Goexit left its delivery unsettled")
		}
	})
	t.Run("CallSettled settles once with the handler's error", func(t *testing.T) {
		var calls []error
		CallSettled(func([]byte) error { return errors.New("x") }, nil, func(err error) { calls = append(calls, err) })
		if len(calls) != 1 || calls[0] == nil || calls[0].Error() != "x" {
			t.Fatalf("settle calls = %v, want one with the handler's error", calls)
		}
	})
}

func TestCallRecoversPanic(t *testing.T) {
	err := Call(func([]byte) error { panic("kaboom") }, nil)
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "kaboom" || len(pe.Stack) == 0 {
		t.Fatalf("Call = %v, want a *PanicError with the value and a stack", err)
	}
}

func TestSkip(t *testing.T) {
	p := DefaultPolicy()
	tests := []struct {
		name string
		d    Delivery
		want error
	}{
		{name: "first delivery is processed", d: Delivery{Attempt: 1}},
		{name: "last delivery is processed", d: Delivery{Attempt: 3}},
		{name: "delivery past max deliver is processed once more", d: Delivery{Attempt: 4}},
		{name: "undecodable delivery is skipped", d: Delivery{Attempt: 1, DecodeErr: errors.New("bad")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Skip(&tt.d)
			switch {
			case tt.d.DecodeErr != nil:
				if !errors.Is(err, tt.d.DecodeErr) {
					t.Fatalf("Skip = %v, want the decode error", err)
				}
			case tt.want == nil && err != nil, tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("Skip = %v, want %v", err, tt.want)
			}
			if err != nil {
				if a, _ := p.Decide(tt.d.Attempt, err); a != DeadLetter {
					t.Fatalf("Decide after Skip = %v, want DeadLetter", a)
				}
			}
		})
	}
}

func TestCheckTopic(t *testing.T) {
	p := DefaultPolicy()
	if err := p.CheckTopic("orders"); err != nil {
		t.Fatalf("CheckTopic(orders) = %v", err)
	}
	long := strings.Repeat("a", relay.MaxTopicLength) // valid, but its dead-letter topic is too long
	if err := p.CheckTopic(long); !errors.Is(err, relay.ErrInvalidTopic) {
		t.Fatalf("CheckTopic(255 bytes) = %v, want ErrInvalidTopic", err)
	}
	p.DeadLetterTopic = func(string) string { return "dead.*" }
	if err := p.CheckTopic("orders"); !errors.Is(err, relay.ErrInvalidTopic) {
		t.Fatalf("CheckTopic with a wildcard dead-letter topic = %v, want ErrInvalidTopic", err)
	}
}
