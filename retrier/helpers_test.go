package retrier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit"
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

// waitClose bounds a Close that waits for handlers which have returned, or
// were released, so that a Close that waits for ever fails the test instead
// of hanging it: it returns at once when the retrier works.
const waitClose = 5 * time.Second

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
		if err := testkit.CloseWithin(t, waitClose, b.Close, "retrier Close at cleanup"); err != nil {
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

// mustNew wraps inner without options and closes it at the end of the test.
func mustNew(t *testing.T, inner relay.Broker) relay.Broker {
	t.Helper()
	b, err := New(inner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = testkit.CloseWithin(t, waitClose, b.Close, "retrier Close at cleanup") })
	return b
}

type failingClose struct{ *syncBroker }

func (failingClose) Close() error { return errors.New("disk full") }
