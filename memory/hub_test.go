package memory

import (
	"context"
	"errors"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-relay/relay"
)

// newTestBroker returns a broker on hub, closed when the test ends.
func newTestBroker(t *testing.T, hub *Hub, opts ...Option) *Broker {
	t.Helper()
	b, err := NewBroker(append([]Option{WithHub(hub)}, opts...)...)
	if err != nil {
		t.Fatalf("NewBroker: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

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
		if err := b.Publish(context.Background(), topic, []byte(strconv.Itoa(i))); err != nil {
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

func TestHubCapacityBlocksPublishUntilSpaceOrContext(t *testing.T) {
	hub := testHub(t, WithCapacity(2))
	b := newTestBroker(t, hub, WithConcurrency(1))
	publishN(t, b, "full", 2)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := b.Publish(ctx, "full", []byte("x"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish on a full topic = %v, want an error wrapping context.DeadlineExceeded", err)
	}
	if time.Since(start) < 40*time.Millisecond {
		t.Fatalf("Publish on a full topic returned after %v, before its deadline", time.Since(start))
	}

	// A publish blocked on the full topic goes through once a group acks.
	done := make(chan error, 1)
	go func() { done <- b.Publish(context.Background(), "full", []byte("2")) }()
	select {
	case err := <-done:
		t.Fatalf("Publish on a full topic returned %v without space", err)
	case <-time.After(30 * time.Millisecond):
	}
	var rec recorder
	if err := b.Subscribe("full", rec.handle); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("blocked Publish: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked Publish did not return after the group acked")
	}
	eventually(t, 5*time.Second, "3 deliveries", func() bool { return rec.len() == 3 })
	if got, want := rec.list(), []string{"0", "1", "2"}; !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}

func TestCloseUnblocksPublishOnFullTopic(t *testing.T) {
	hub := testHub(t, WithCapacity(1))
	b := newTestBroker(t, hub)
	publishN(t, b, "full", 1)
	done := make(chan error, 1)
	go func() { done <- b.Publish(context.Background(), "full", nil) }()
	time.Sleep(20 * time.Millisecond) // let it block; the result holds either way
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, relay.ErrClosed) {
			t.Fatalf("Publish blocked at Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Publish stayed blocked after Close")
	}
}

func TestGroupsFanOutAndCompete(t *testing.T) {
	tests := []struct {
		name      string
		groups    [2]string
		wantTotal int // deliveries over both brokers
	}{
		{name: "same group competes", groups: [2]string{"g", "g"}, wantTotal: 20},
		{name: "different groups fan out", groups: [2]string{"a", "b"}, wantTotal: 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := testHub(t)
			var recs [2]recorder
			for i, g := range tt.groups {
				b := newTestBroker(t, hub, WithGroup(g))
				if err := b.Subscribe("orders", recs[i].handle); err != nil {
					t.Fatal(err)
				}
			}
			pub := newTestBroker(t, hub)
			publishN(t, pub, "orders", 20)
			total := func() int { return recs[0].len() + recs[1].len() }
			eventually(t, 5*time.Second, "all deliveries", func() bool { return total() >= tt.wantTotal })
			time.Sleep(50 * time.Millisecond) // a duplicate would show up now
			if total() != tt.wantTotal {
				t.Fatalf("delivered %d messages in all, want %d", total(), tt.wantTotal)
			}
			if tt.groups[0] != tt.groups[1] {
				for i := range recs {
					if recs[i].len() != 20 {
						t.Fatalf("group %s got %d messages, want 20", tt.groups[i], recs[i].len())
					}
				}
			}
			eventually(t, 5*time.Second, "every group acknowledged", func() bool { return pending(hub, "orders") == 0 })
		})
	}
}

func TestLateGroupGetsStoredMessages(t *testing.T) {
	hub := testHub(t)
	b := newTestBroker(t, hub, WithConcurrency(1))
	publishN(t, b, "early", 5)
	if got := stored(hub, "early"); got != 5 {
		t.Fatalf("topic without group holds %d messages, want 5", got)
	}
	var rec recorder
	if err := b.Subscribe("early", rec.handle); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "5 deliveries", func() bool { return rec.len() == 5 })
	if got, want := rec.list(), []string{"0", "1", "2", "3", "4"}; !slices.Equal(got, want) {
		t.Fatalf("late group got %v, want %v", got, want)
	}
	eventually(t, 5*time.Second, "every group acknowledged", func() bool { return pending(hub, "early") == 0 })

	if got := stored(hub, "early"); got != 5 {
		t.Fatalf("after the only group acknowledged them, topic holds %d messages, want 5 kept", got)
	}
}

// As from a NATS or Redis stream, a group created after every existing group
// acknowledged the messages still gets them: the topic keeps acknowledged
// messages up to its capacity.
func TestLateGroupGetsMessagesOtherGroupsAcked(t *testing.T) {
	hub := testHub(t)
	var first recorder
	b := newTestBroker(t, hub, WithGroup("first"), WithConcurrency(1))
	if err := b.Subscribe("kept", first.handle); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, "kept", 3)
	eventually(t, 5*time.Second, "first group done", func() bool { return first.len() == 3 })
	eventually(t, 5*time.Second, "every group acknowledged", func() bool { return pending(hub, "kept") == 0 })

	var late recorder
	if err := newTestBroker(t, hub, WithGroup("late"), WithConcurrency(1)).Subscribe("kept", late.handle); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "late group gets the acknowledged messages", func() bool { return late.len() == 3 })
	if got, want := late.list(), []string{"0", "1", "2"}; !slices.Equal(got, want) {
		t.Fatalf("late group got %v, want %v", got, want)
	}
}

// A full topic makes room by dropping the oldest message that every group
// acknowledged, even when an older one is still held by a group; a group
// created later then starts at the oldest message left.
func TestFullTopicDropsOldestMessageEveryGroupAcked(t *testing.T) {
	hub := testHub(t, WithCapacity(4))
	// Group "slow" holds message "0" in its handler and acknowledges the rest.
	var slowGot recorder
	slow := newTestBroker(t, hub, WithGroup("slow"), WithConcurrency(2))
	release := make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // before the broker's Close, even when the test fails
	if err := slow.Subscribe("t", func(p []byte) error {
		if string(p) == "0" {
			<-release
		}
		return slowGot.handle(p)
	}); err != nil {
		t.Fatal(err)
	}
	var fast recorder
	if err := newTestBroker(t, hub, WithGroup("fast")).Subscribe("t", fast.handle); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := slow.Publish(ctx, "t", []byte(strconv.Itoa(i)))
		cancel()
		if err != nil {
			t.Fatalf("Publish %d on a full topic with acknowledged messages: %v", i, err)
		}
		// Message i acknowledged by both groups before the next publish.
		eventually(t, 5*time.Second, "both groups done", func() bool {
			return fast.len() == i+1 && (i == 0 || slowGot.len() == i)
		})
	}
	if got := stored(hub, "t"); got != 4 {
		t.Fatalf("topic holds %d messages, want its capacity, 4", got)
	}
	var late recorder
	if err := newTestBroker(t, hub, WithGroup("late"), WithConcurrency(1)).Subscribe("t", late.handle); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "late group done", func() bool { return late.len() == 4 })
	if got, want := late.list(), []string{"0", "3", "4", "5"}; !slices.Equal(got, want) {
		t.Fatalf("late group got %v, want %v: the unacknowledged 0 and the newest", got, want)
	}
	unblock()
	eventually(t, 5*time.Second, "every group acknowledged", func() bool { return pending(hub, "t") == 0 })
}

// A message is dropped only once every existing group acknowledged it, and
// never while the topic has no group: then a full topic blocks Publish.
func TestFullTopicBlocksWhileNoMessageCanBeDropped(t *testing.T) {
	tests := []struct {
		name  string
		group bool // a group exists and has not acknowledged anything
	}{
		{name: "no group", group: false},
		{name: "group not done", group: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := testHub(t, WithCapacity(2))
			b := newTestBroker(t, hub)
			if tt.group {
				sub, err := NewSubscriber(hub, WithGroup("idle"))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = sub.Close() })
				if err := sub.SubscribeInitialize("full"); err != nil {
					t.Fatal(err)
				}
			}
			publishN(t, b, "full", 2)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			if err := b.Publish(ctx, "full", []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Publish on a full topic = %v, want an error wrapping context.DeadlineExceeded", err)
			}
			if got := stored(hub, "full"); got != 2 {
				t.Fatalf("topic holds %d messages, want 2", got)
			}
		})
	}
}

func TestMessageStaysPendingUntilEveryGroupAcks(t *testing.T) {
	hub := testHub(t)
	release := make(chan struct{})
	slow := newTestBroker(t, hub, WithGroup("slow"))
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // before the broker's Close, even when the test fails
	if err := slow.Subscribe("t", func([]byte) error { <-release; return nil }); err != nil {
		t.Fatal(err)
	}
	var fast recorder
	if err := newTestBroker(t, hub, WithGroup("fast")).Subscribe("t", fast.handle); err != nil {
		t.Fatal(err)
	}
	publishN(t, slow, "t", 3)
	eventually(t, 5*time.Second, "fast group done", func() bool { return fast.len() == 3 })
	if got := stored(hub, "t"); got != 3 {
		t.Fatalf("after one of two groups acked, topic holds %d messages, want 3", got)
	}

	// A group made now starts at the oldest message still stored.
	var third recorder
	if err := newTestBroker(t, hub, WithGroup("third")).Subscribe("t", third.handle); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "third group gets stored messages", func() bool { return third.len() == 3 })

	unblock()
	eventually(t, 5*time.Second, "every group acknowledged", func() bool { return pending(hub, "t") == 0 })
}

func TestRedeliveryWaitsBackoff(t *testing.T) {
	tests := []struct {
		name       string
		native     bool
		maxDeliver int
	}{
		{name: "plain queue ignores max deliver", native: false, maxDeliver: 1},
		{name: "native retries", native: true, maxDeliver: 1000},
	}
	const backoff = 40 * time.Millisecond
	const window = 400 * time.Millisecond
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var times []time.Time
			hub := testHub(t)
			b := newTestBroker(t, hub, WithBackoff(backoff, backoff), WithNativeRetries(tt.native),
				WithMaxDeliver(tt.maxDeliver))
			if err := b.Subscribe("fail", func([]byte) error {
				mu.Lock()
				defer mu.Unlock()
				times = append(times, time.Now())
				return errors.New("always")
			}); err != nil {
				t.Fatal(err)
			}
			publishN(t, b, "fail", 1)
			time.Sleep(window) // the window we count deliveries in
			mu.Lock()
			n := len(times)
			gaps := make([]time.Duration, 0, n)
			for i := 1; i < n; i++ {
				gaps = append(gaps, times[i].Sub(times[i-1]))
			}
			mu.Unlock()
			// Each wait is at least the min backoff, never less (the equal
			// jitter of old waited down to half of it): at most window/backoff+1.
			if max := int(window/backoff) + 1; n < 2 || n > max {
				t.Fatalf("%d deliveries in %v with backoff %v, want 2..%d", n, window, backoff, max)
			}
			for _, g := range gaps {
				if g < backoff-time.Millisecond {
					t.Fatalf("redelivered after %v, below the min backoff %v", g, backoff)
				}
			}
			if got := stored(hub, "fail.dead"); got != 0 {
				t.Fatalf("%d dead letters, want none", got)
			}
			if tt.native != b.HandlesRetries() {
				t.Fatalf("HandlesRetries() = %v with WithNativeRetries(%v)", b.HandlesRetries(), tt.native)
			}
		})
	}
}

func TestFailedMessageDoesNotBlockOthers(t *testing.T) {
	hub := testHub(t)
	b := newTestBroker(t, hub, WithConcurrency(1), WithBackoff(100*time.Millisecond, 100*time.Millisecond))
	var rec recorder
	failed := false
	if err := b.Subscribe("q", func(p []byte) error {
		if string(p) == "0" && !failed {
			failed = true // one handler at a time: no race
			return errors.New("once")
		}
		return rec.handle(p)
	}); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, "q", 3)
	eventually(t, 5*time.Second, "3 handled", func() bool { return rec.len() == 3 })
	if got, want := rec.list(), []string{"1", "2", "0"}; !slices.Equal(got, want) {
		t.Fatalf("handled %v, want %v: the failed message comes back after the later ones", got, want)
	}
}

func TestDeadLetters(t *testing.T) {
	tests := []struct {
		name         string
		err          error
		panics       bool
		wantAttempts string
	}{
		{name: "after max deliver", err: errors.New("boom"), wantAttempts: "3"},
		{name: "permanent at once", err: relay.Permanent(errors.New("bad")), wantAttempts: "1"},
		{name: "panic counts as failure", panics: true, wantAttempts: "3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := testHub(t)
			b := newTestBroker(t, hub, WithBackoff(time.Millisecond, 2*time.Millisecond))
			if err := b.Subscribe("src", func(p []byte) error {
				if tt.panics {
					panic("handler panic")
				}
				return tt.err
			}); err != nil {
				t.Fatal(err)
			}
			sub, err := NewSubscriber(hub, WithGroup("dead-readers"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sub.Close() })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			dead, err := sub.Subscribe(ctx, "src.dead")
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Publish(ctx, "src", []byte("payload")); err != nil {
				t.Fatal(err)
			}
			select {
			case msg := <-dead:
				msg.Ack()
				md := msg.Metadata
				if string(msg.Payload) != "payload" || md.Get(relay.MetadataSourceTopic) != "src" ||
					md.Get(relay.MetadataSourceID) != "1" || md.Get(relay.MetadataAttempts) != tt.wantAttempts ||
					md.Get(relay.MetadataReason) == "" {
					t.Fatalf("dead letter payload %q metadata %v", msg.Payload, md)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no dead letter")
			}
			eventually(t, 5*time.Second, "source acknowledged", func() bool { return pending(hub, "src") == 0 })
		})
	}
}

func TestUnfinishedWatermillDeliveryStaysForGroup(t *testing.T) {
	hub := testHub(t)
	first, err := NewSubscriber(hub)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = first.Close() })
	ch, err := first.Subscribe(context.Background(), "w")
	if err != nil {
		t.Fatal(err)
	}
	pub := newTestBroker(t, hub)
	publishN(t, pub, "w", 1)
	var uuid string
	select {
	case msg := <-ch:
		uuid = msg.UUID // taken and never acked
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if _, open := <-ch; open {
		t.Fatal("output channel still open after Close")
	}

	second, err := NewSubscriber(hub)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Close() })
	ch2, err := second.Subscribe(context.Background(), "w")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-ch2:
		if msg.UUID != uuid {
			t.Fatalf("redelivered UUID %s, want %s", msg.UUID, uuid)
		}
		msg.Ack()
	case <-time.After(5 * time.Second):
		t.Fatal("unfinished delivery not redelivered to the group's next subscriber")
	}
	eventually(t, 5*time.Second, "acked", func() bool { return pending(hub, "w") == 0 })
}

func TestClose(t *testing.T) {
	b := newTestBroker(t, testHub(t))
	started, release := make(chan struct{}), make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock)
	var finished atomic.Bool
	if err := b.Subscribe("c", func([]byte) error {
		close(started)
		<-release
		finished.Store(true)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, "c", 1)
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("handler not started")
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := b.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	time.Sleep(20 * time.Millisecond) // Close must still be waiting; finished says if it was
	unblock()
	wg.Wait()
	if !finished.Load() {
		t.Fatal("Close returned before the running handler finished")
	}
	if err := b.Publish(context.Background(), "c", nil); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("Publish after Close = %v, want ErrClosed", err)
	}
	if err := b.Subscribe("c", func([]byte) error { return nil }); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("Subscribe after Close = %v, want ErrClosed", err)
	}
}

func TestPublishCopiesPayload(t *testing.T) {
	hub := testHub(t)
	b := newTestBroker(t, hub, WithConcurrency(1))
	got := make(chan []byte, 2)
	if err := b.Subscribe("p", func(p []byte) error { got <- p; return nil }); err != nil {
		t.Fatal(err)
	}
	buf := []byte("abc")
	if err := b.Publish(context.Background(), "p", buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, "xyz")
	if err := b.Publish(context.Background(), "p", nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"abc", ""} {
		select {
		case p := <-got:
			if string(p) != want || p == nil {
				t.Fatalf("delivered %q (nil: %v), want %q, not nil", p, p == nil, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no delivery")
		}
	}
}

func TestInvalidInput(t *testing.T) {
	tests := []struct {
		name string
		run  func() error
		want error
	}{
		{name: "nil hub", run: func() error { _, err := NewBroker(WithHub(nil)); return err }, want: relay.ErrInvalidOption},
		{name: "zero capacity", run: func() error { _, err := NewHub(WithCapacity(0)); return err }, want: relay.ErrInvalidOption},
		{name: "negative capacity", run: func() error { _, err := NewHub(WithCapacity(-1)); return err }, want: relay.ErrInvalidOption},
		{name: "nil hub option", run: func() error { _, err := NewHub(nil, WithCapacity(1)); return err }, want: relay.ErrInvalidOption},
		{name: "nil option", run: func() error { _, err := NewBroker(WithGroup("g"), nil); return err }, want: relay.ErrInvalidOption},
		{name: "nil option to publisher", run: func() error { _, err := NewPublisher(testHub(t), nil); return err }, want: relay.ErrInvalidOption},
		{name: "nil option to subscriber", run: func() error { _, err := NewSubscriber(testHub(t), nil); return err }, want: relay.ErrInvalidOption},
		{name: "concurrency over the bound", run: func() error { _, err := NewBroker(WithConcurrency(relay.MaxConcurrency + 1)); return err }, want: relay.ErrInvalidOption},
		{name: "concurrency of max int", run: func() error { _, err := NewBroker(WithConcurrency(math.MaxInt)); return err }, want: relay.ErrInvalidOption},
		{name: "concurrency at the bound", run: func() error { _, err := NewBroker(WithConcurrency(relay.MaxConcurrency)); return err }, want: nil},
		{name: "min backoff of 1ns, a busy loop", run: func() error { _, err := NewBroker(WithBackoff(time.Nanosecond, time.Second)); return err }, want: relay.ErrInvalidOption},
		{name: "backoff up to max duration", run: func() error { _, err := NewBroker(WithBackoff(100*time.Millisecond, math.MaxInt64)); return err }, want: nil},
		{name: "capacity of max int", run: func() error { _, err := NewHub(WithCapacity(math.MaxInt)); return err }, want: nil},
		{name: "empty group", run: func() error { _, err := NewBroker(WithGroup("")); return err }, want: relay.ErrInvalidOption},
		{name: "zero concurrency", run: func() error { _, err := NewBroker(WithConcurrency(0)); return err }, want: relay.ErrInvalidOption},
		{name: "zero max deliver", run: func() error { _, err := NewBroker(WithMaxDeliver(0)); return err }, want: relay.ErrInvalidOption},
		{name: "inverted backoff", run: func() error { _, err := NewBroker(WithBackoff(time.Second, time.Millisecond)); return err }, want: relay.ErrInvalidOption},
		{name: "nil dead-letter func", run: func() error { _, err := NewBroker(WithDeadLetterTopic(nil)); return err }, want: relay.ErrInvalidOption},
		{name: "nil logger", run: func() error { _, err := NewBroker(WithLogger(nil)); return err }, want: relay.ErrInvalidOption},
		{name: "nil tracer provider", run: func() error { _, err := NewBroker(WithTracerProvider(nil)); return err }, want: relay.ErrInvalidOption},
		{name: "nil meter provider", run: func() error { _, err := NewPublisher(testHub(t), WithMeterProvider(nil)); return err }, want: relay.ErrInvalidOption},
		{name: "nil propagators", run: func() error { _, err := NewSubscriber(testHub(t), WithPropagators(nil)); return err }, want: relay.ErrInvalidOption},
		{name: "publisher nil hub", run: func() error { _, err := NewPublisher(nil); return err }, want: relay.ErrInvalidOption},
		{name: "subscriber nil hub", run: func() error { _, err := NewSubscriber(nil); return err }, want: relay.ErrInvalidOption},
		{name: "subscriber other hub", run: func() error { _, err := NewSubscriber(testHub(t), WithHub(testHub(t))); return err }, want: relay.ErrInvalidOption},
		{name: "invalid topic", run: func() error {
			b, _ := NewBroker()
			defer b.Close()
			return b.Publish(context.Background(), "a..b", nil)
		}, want: relay.ErrInvalidTopic},
		{name: "invalid dead-letter topic", run: func() error {
			b, _ := NewBroker()
			defer b.Close()
			return b.Subscribe(strings.Repeat("a", relay.MaxTopicLength), func([]byte) error { return nil })
		}, want: relay.ErrInvalidTopic},
		{name: "nil handler", run: func() error {
			b, _ := NewBroker()
			defer b.Close()
			return b.Subscribe("a", nil)
		}, want: relay.ErrNilHandler},
		{name: "canceled context", run: func() error {
			b, _ := NewBroker()
			defer b.Close()
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return b.Publish(ctx, "a", nil)
		}, want: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want an error wrapping %v", err, tt.want)
			}
		})
	}
}

func TestConcurrencyBound(t *testing.T) {
	const conc = 3
	b := newTestBroker(t, testHub(t), WithConcurrency(conc))
	var mu sync.Mutex
	running, peak, done := 0, 0, 0
	if err := b.Subscribe("load", func([]byte) error {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		running--
		done++
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, "load", 30)
	eventually(t, 5*time.Second, "30 handled", func() bool { mu.Lock(); defer mu.Unlock(); return done == 30 })
	if peak != conc {
		t.Fatalf("peak concurrency %d, want %d", peak, conc)
	}
}

func TestSubscribeInitializeKeepsMessagesForGroup(t *testing.T) {
	hub := testHub(t)
	sub, err := NewSubscriber(hub, WithGroup("late"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	if err := sub.SubscribeInitialize("init"); err != nil {
		t.Fatal(err)
	}
	// Another group consumes everything; the initialized group still holds it.
	var rec recorder
	b := newTestBroker(t, hub, WithGroup("eager"))
	if err := b.Subscribe("init", rec.handle); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, "init", 3)
	eventually(t, 5*time.Second, "eager group done", func() bool { return rec.len() == 3 })
	if got := stored(hub, "init"); got != 3 {
		t.Fatalf("topic holds %d messages, want 3 kept for the initialized group", got)
	}
	ch, err := sub.Subscribe(context.Background(), "init")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		select {
		case msg := <-ch:
			msg.Ack()
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d not delivered to the initialized group", i)
		}
	}
	eventually(t, 5*time.Second, "every group acknowledged", func() bool { return pending(hub, "init") == 0 })
}

// A handler that calls runtime.Goexit (t.FailNow in a test handler does)
// ends its worker inside the handler: the delivery counts as failed and is
// redelivered, and the subscription keeps its worker and goes on.
func TestHandlerGoexitKeepsSubscriptionRunning(t *testing.T) {
	hub := testHub(t)
	b := newTestBroker(t, hub, WithConcurrency(1), WithBackoff(time.Millisecond, 2*time.Millisecond))
	var rec recorder
	var exited atomic.Bool
	if err := b.Subscribe("exit", func(p []byte) error {
		if string(p) == "0" && exited.CompareAndSwap(false, true) {
			runtime.Goexit()
		}
		return rec.handle(p)
	}); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, "exit", 3)
	eventually(t, 5*time.Second, "3 handled", func() bool { return rec.len() == 3 })
	if got := rec.list(); !slices.Contains(got, "0") {
		t.Fatalf("handled %v: the message whose handler called Goexit was not redelivered", got)
	}
	eventually(t, 5*time.Second, "every group acknowledged", func() bool { return pending(hub, "exit") == 0 })
}

// Lost wake-ups: competing subscriptions of one group come and go while
// messages are published, fail and are redelivered after short backoffs.
// Every message must be handled (a wake-up handed to a stopping worker must
// reach another subscription), and none may stay stored.
func TestWakeUpsUnderSubscriptionChurn(t *testing.T) {
	const messages = 2000
	hub := testHub(t)
	opts := []Option{WithGroup("g"), WithConcurrency(2), WithBackoff(time.Millisecond, 3*time.Millisecond),
		WithMaxDeliver(1000)}
	var handled sync.Map // payload → struct{}
	var count atomic.Int64
	var calls atomic.Int64
	handler := func(p []byte) error {
		if calls.Add(1)%7 == 0 {
			return errors.New("transient") // every seventh call fails: redeliveries and timers
		}
		if _, dup := handled.LoadOrStore(string(p), struct{}{}); !dup {
			count.Add(1)
		}
		return nil
	}
	// One subscription that lives through the test, so that progress never
	// depends on the churn alone.
	if err := newTestBroker(t, hub, opts...).Subscribe("churn", handler); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var churn sync.WaitGroup
	for range 3 {
		churn.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				b, err := NewBroker(append([]Option{WithHub(hub)}, opts...)...)
				if err != nil {
					t.Error(err)
					return
				}
				if err := b.Subscribe("churn", handler); err != nil {
					t.Error(err)
				}
				time.Sleep(time.Millisecond)
				_ = b.Close()
			}
		})
	}
	pub := newTestBroker(t, hub)
	var pubs sync.WaitGroup
	for w := range 4 {
		pubs.Go(func() {
			for i := w; i < messages; i += 4 {
				if err := pub.Publish(context.Background(), "churn", []byte(strconv.Itoa(i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	pubs.Wait()
	eventually(t, 20*time.Second, "every message handled", func() bool { return count.Load() == messages })
	close(stop)
	churn.Wait()
	eventually(t, 5*time.Second, "every group acknowledged", func() bool { return pending(hub, "churn") == 0 })
}
