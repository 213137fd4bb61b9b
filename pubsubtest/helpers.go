package pubsubtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-relay/relay"
)

// Timeouts of the suite's waits. Every wait polls and returns as soon as its
// condition holds, so generous bounds cost nothing on success and keep the
// suite robust on a loaded machine.
const (
	waitShort = 10 * time.Second // one message, a Close, an error
	waitLong  = 30 * time.Second // thousands of messages, a restart
	pollEvery = 5 * time.Millisecond
)

// randomSuffix returns n random bytes in hex.
func randomSuffix(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error (Go 1.24+).
	return hex.EncodeToString(b)
}

// sanitize keeps the letters, digits, '_' and '-' of s, lower-cased, maps every
// other rune to '_', collapses runs of '_' and cuts the result to max bytes.
func sanitize(s string, max int) string {
	var b strings.Builder
	last := byte(0)
	for _, r := range strings.ToLower(s) {
		c := byte('_')
		if r < 128 && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			c = byte(r)
		}
		if c == '_' && last == '_' {
			continue
		}
		b.WriteByte(c)
		last = c
		if b.Len() >= max {
			break
		}
	}
	return strings.Trim(b.String(), "_")
}

// NewTopic returns a topic unique to t and to this call, valid by
// [relay.ValidateTopic] and short enough that its dead-letter topic and a
// backend's derived names (streams, keys) stay within limits:
// "relay_test_" + the sanitized test name + "_" + a random suffix.
func NewTopic(t testing.TB) string {
	t.Helper()
	topic := "relay_test_" + sanitize(t.Name(), 60) + "_" + randomSuffix(4)
	if err := relay.ValidateTopic(topic); err != nil {
		t.Fatalf("pubsubtest: generated topic: %v", err)
	}
	return topic
}

// NewGroup returns a consumer group name unique to this call, made of letters,
// digits and '_' only, so that every backend accepts it as a durable or group
// name.
func NewGroup() string { return "relay_g_" + randomSuffix(6) }

// eventually polls cond until it returns true or timeout passes, and then
// fails t with the message of what.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, what string, args ...any) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("after %v: "+what, append([]any{timeout}, args...)...)
	}
}

// poll reports whether cond became true within timeout, polling it.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
}

// receipt is one call of a handler.
type receipt struct {
	payload []byte
	at      time.Time
}

// inbox records what handlers receive. Its methods are safe for concurrent
// use.
type inbox struct {
	mu    sync.Mutex
	got   []receipt
	count map[string]int
}

func newInbox() *inbox { return &inbox{count: make(map[string]int)} }

// add records a copy of payload.
func (in *inbox) add(payload []byte) {
	p := bytes.Clone(payload)
	in.mu.Lock()
	defer in.mu.Unlock()
	in.got = append(in.got, receipt{payload: p, at: time.Now()})
	in.count[string(p)]++
}

// handler returns a handler that records every payload and then returns the
// result of then (nil when then is nil).
func (in *inbox) handler(then func(payload []byte) error) relay.Handler {
	return func(payload []byte) error {
		in.add(payload)
		if then != nil {
			return then(payload)
		}
		return nil
	}
}

// len returns the number of deliveries recorded.
func (in *inbox) len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.got)
}

// distinct returns the number of distinct payloads recorded.
func (in *inbox) distinct() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.count)
}

// counts returns a copy of the deliveries per payload.
func (in *inbox) counts() map[string]int {
	in.mu.Lock()
	defer in.mu.Unlock()
	c := make(map[string]int, len(in.count))
	for k, v := range in.count {
		c[k] = v
	}
	return c
}

// receipts returns a copy of what was recorded, in order of arrival.
func (in *inbox) receipts() []receipt {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]receipt(nil), in.got...)
}

// payloads returns the payloads recorded, in order of arrival.
func (in *inbox) payloads() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	s := make([]string, len(in.got))
	for i, r := range in.got {
		s[i] = string(r.payload)
	}
	return s
}

// times returns the arrival times of the deliveries of payload.
func (in *inbox) times(payload string) []time.Time {
	in.mu.Lock()
	defer in.mu.Unlock()
	var ts []time.Time
	for _, r := range in.got {
		if string(r.payload) == payload {
			ts = append(ts, r.at)
		}
	}
	return ts
}

// waitDistinct waits until n distinct payloads arrived.
func (in *inbox) waitDistinct(t testing.TB, n int, timeout time.Duration, what string) {
	t.Helper()
	eventually(t, timeout, func() bool { return in.distinct() >= n },
		"%s: %d of %d distinct messages received", what, in.distinct(), n)
}

// quiet waits d, the window in which a misbehaving backend would show a
// duplicate or an extra delivery. It is an observation window, not a
// synchronisation.
func quiet(d time.Duration) { time.Sleep(d) }

// messages returns n distinct payloads "<prefix>-000000", "<prefix>-000001", ...
func messages(prefix string, n int) []string {
	ms := make([]string, n)
	for i := range ms {
		ms[i] = fmt.Sprintf("%s-%06d", prefix, i)
	}
	return ms
}

// publishAll publishes every payload in order and fails t on the first error.
func publishAll(t testing.TB, b relay.Broker, topic string, payloads []string) {
	t.Helper()
	for _, p := range payloads {
		ctx, cancel := context.WithTimeout(context.Background(), waitShort)
		err := b.Publish(ctx, topic, []byte(p))
		cancel()
		if err != nil {
			t.Fatalf("Publish(%q, %q): %v", topic, p, err)
		}
	}
}

// publishConcurrently publishes payloads from workers goroutines and fails t
// with the first error.
func publishConcurrently(t testing.TB, b relay.Broker, topic string, payloads []string, workers int) {
	t.Helper()
	work := make(chan string)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for p := range work {
				ctx, cancel := context.WithTimeout(context.Background(), waitLong)
				err := b.Publish(ctx, topic, []byte(p))
				cancel()
				if err != nil {
					errs <- err
					for range work { // drain so the feeder never blocks
					}
					return
				}
			}
		})
	}
	for _, p := range payloads {
		work <- p
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("concurrent Publish to %q: %v", topic, err)
	}
}

// publishUntil retries Publish until it succeeds or timeout passes: used while
// a backend reconnects after a restart, where a publish may fail transiently.
func publishUntil(t testing.TB, b relay.Broker, topic string, payload []byte, timeout time.Duration) {
	t.Helper()
	var last error
	ok := poll(timeout, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		last = b.Publish(ctx, topic, payload)
		return last == nil
	})
	if !ok {
		t.Fatalf("Publish(%q) kept failing for %v, last error: %v", topic, timeout, last)
	}
}
