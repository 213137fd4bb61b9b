package retrier

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-relay/relay/internal/testkit"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-relay/relay"
)

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
	var logs testkit.Buffer
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

// panickyError is an error whose Error method panics on a nil receiver.
type panickyError struct{ text *string }

func (e *panickyError) Error() string { return *e.text }

// A handler returning a typed nil error whose Error method panics: the
// message is dead-lettered, and the dead-letter record's error, the only
// place the byte face's reason shows, mentions the panic. (That the process
// survives it is pubsubtest's row, run by TestConformanceBroker.) It guards
// against formatting the error outside any recover.
func TestDeadLetterOfAnErrorWhoseErrorMethodPanicsSaysSo(t *testing.T) {
	var logs testkit.Buffer
	inner := newSyncBroker()
	b := newRetrier(t, inner, WithMaxDeliver(1), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	subscribe(t, b, "orders", func([]byte) error {
		var typedNil *panickyError
		return typedNil
	})
	publish(t, b, "orders", []byte("x"))
	require.Equal(t, [][]byte{[]byte("x")}, inner.on("orders.dead"))
	var record string
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "dead-letter") {
			record = line
		}
	}
	assert.Contains(t, record, "panic", "the dead-letter record's error")
}
