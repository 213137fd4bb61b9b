package memory

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-relay/relay/internal/testkit"
)

// newTestBroker returns a broker on hub, closed when the test ends.
func newTestBroker(t *testing.T, hub *Hub, opts ...Option) *Broker {
	t.Helper()
	b, err := NewBroker(append([]Option{WithHub(hub)}, opts...)...)
	if err != nil {
		t.Fatalf("NewBroker: %v", err)
	}
	// Bounded: a Close that waits for ever for a handler fails the test
	// instead of hanging it.
	t.Cleanup(func() { _ = testkit.CloseWithin(t, waitClose, b.Close, "broker Close at cleanup") })
	return b
}

// waitClose bounds a Close or Shutdown that waits for handlers which have
// returned, or were released: it returns at once when the broker works.
const waitClose = 10 * time.Second

// testHub returns a hub made with opts, failing t on an error.
func testHub(t testing.TB, opts ...HubOption) *Hub {
	t.Helper()
	hub, err := NewHub(opts...)
	if err != nil {
		t.Fatalf("NewHub: %v", err)
	}
	return hub
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stored returns how many messages topic holds on hub, acknowledged or not.
func stored(hub *Hub, name string) int {
	t := hub.topic(name)
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.count
}

// pending returns how many messages of topic on hub some group has not
// acknowledged yet (every message, while the topic has no group).
func pending(hub *Hub, name string) int {
	t := hub.topic(name)
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.count - len(t.acked)
}

func publishN(t *testing.T, b *Broker, topic string, n int) {
	t.Helper()
	for i := range n {
		// Bounded: a Publish to a full topic would wait for room for ever.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := b.Publish(ctx, topic, []byte(strconv.Itoa(i)))
		cancel()
		if err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
}

// recorder is a handler that records payloads.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) handle(p []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, string(p))
	return nil
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *recorder) len() int { return len(r.list()) }
