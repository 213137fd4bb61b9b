package pubsubtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/go-relay/relay"
)

// TestBroker runs the byte-face conformance suite against the brokers that
// h.NewBroker makes. Each sub-test is named by the behaviour it checks, runs
// in a fixed order, uses its own topics and groups, and closes what it made
// with t.Cleanup. A sub-test whose capability h does not declare is skipped
// with the reason.
//
// The harness must keep the backend's default dead-letter topic, the topic
// plus ".dead". The sub-test that looks for leaked goroutines assumes that no
// other test runs at the same time: do not call t.Parallel in the test that
// calls TestBroker.
func TestBroker(t *testing.T, h Harness) {
	if h.NewBroker == nil {
		t.Fatal("pubsubtest: Harness.NewBroker is nil")
	}
	s := &byteSuite{h: h}
	for _, c := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"payloads round-trip byte for byte", s.testRoundTrip},
		{"every message is received exactly once per group when handlers succeed", s.testExactlyOncePerGroup},
		{"subscriptions of one group compete for messages", s.testCompetingConsumers},
		{"every group receives every message", s.testFanOut},
		{"a subscription receives only its own topic", s.testTopicIsolation},
		{"messages published before a group subscribes are delivered to it", s.testPublishBeforeSubscribe},
		{"a failed delivery is redelivered after a backoff", s.testRedelivery},
		{"a message that fails MaxDeliver times goes to the dead-letter topic", s.testDeadLetter},
		{"a permanent error sends the message to the dead-letter topic after one delivery", s.testPermanent},
		{"messages are handled in publish order with concurrency 1", s.testOrder},
		{"Close is idempotent and safe to call concurrently", s.testCloseConcurrent},
		{"Close waits for running handlers to return", s.testCloseWaits},
		{"Publish and Subscribe return ErrClosed after Close", s.testErrClosed},
		{"a message not finished at Close is redelivered to another broker of the group", s.testNothingLostOnClose},
		{"Close leaves no goroutine behind", s.testNoGoroutineLeft},
		{"an invalid topic is rejected by Publish and Subscribe", s.testInvalidTopic},
		{"a nil handler is rejected", s.testNilHandler},
		{"Publish returns promptly with the context's error", s.testPublishContext},
		{"a nil context is rejected with ErrNilContext by every call that takes one", s.testNilContext},
		{"a payload over the limit is rejected before anything is sent", s.testPayloadTooLarge},
		{"failed deliveries and dead letters are logged with the shared keys", s.testLogSchema},
		{"Shutdown with a deadline returns while a handler is blocked", s.testShutdownDeadline},
		{"messages published before a restart are delivered after it", s.testPersistAcrossRestart},
		{"a running subscription keeps consuming after a restart", s.testReconnect},
	} {
		t.Run(c.name, c.run)
	}
	for _, c := range s.delayedRows() {
		t.Run(c.name, c.run)
	}
}

type byteSuite struct{ h Harness }

// broker returns a new broker configured by cfg, closed at the end of t.
func (s *byteSuite) broker(t *testing.T, cfg Config) relay.Broker {
	t.Helper()
	b, err := s.h.NewBroker(t, cfg)
	if err != nil {
		t.Fatalf("NewBroker(%+v): %v", cfg, err)
	}
	if b == nil {
		t.Fatalf("NewBroker(%+v) returned a nil broker and no error", cfg)
	}
	t.Cleanup(func() {
		// Close after Close must return nil too: the suite often closed it already.
		if err := b.Close(); err != nil {
			t.Errorf("Close at cleanup: %v", err)
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
	ctx, cancel := context.WithTimeout(context.Background(), waitShort)
	defer cancel()
	if err := b.Publish(ctx, topic, payload); err != nil {
		t.Fatalf("Publish(%q, %d bytes): %v", topic, len(payload), err)
	}
}

// errInduced is what the suite's failing handlers return.
var errInduced = errors.New("pubsubtest: induced handler failure")

// settleWindow is how long the suite watches for a delivery that should not
// happen (a duplicate, a retry after success): a few maximum backoffs.
func settleWindow(cfg Config) time.Duration { return 3*cfg.MaxBackoff + 100*time.Millisecond }

func (s *byteSuite) testRoundTrip(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := make([]byte, 512<<10)
	_, _ = rand.Read(big) // never fails (Go 1.24+)
	cases := []struct {
		name    string
		payload []byte
	}{
		{"nil payload", nil},
		{"empty payload", []byte{}},
		{"all 256 byte values", all},
		{"invalid UTF-8", []byte("\xff\xfe\xfd a\xc3\x28 \xed\xa0\x80 \xc0\xaf")},
		{"text with NUL and newlines", []byte("a\x00b\r\nc\n")},
		{"512 KiB payload", big},
	}
	b := s.broker(t, DefaultConfig())
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if max := s.h.Capabilities.MaxPayload; max > 0 && len(c.payload) > max {
				t.Skipf("payload of %d bytes is over the declared MaxPayload %d", len(c.payload), max)
			}
			topic := NewTopic(t)
			got := make(chan []byte, 8)
			subscribe(t, b, topic, func(p []byte) error {
				select {
				case got <- bytes.Clone(p):
				default: // a duplicate beyond the buffer; the first one is what counts
				}
				return nil
			})
			sent := bytes.Clone(c.payload)
			publish(t, b, topic, sent)
			// Publish must not keep the caller's slice once it returned.
			for i := range sent {
				sent[i] ^= 0xff
			}
			select {
			case p := <-got:
				if err := checkPayload(p, c.payload); err != nil {
					t.Error(err)
				}
			case <-time.After(waitShort):
				t.Fatalf("no message received within %v", waitShort)
			}
		})
	}
}

func (s *byteSuite) testExactlyOncePerGroup(t *testing.T) {
	n := 10_000
	if testing.Short() {
		n = 1_000
	}
	topic := NewTopic(t)
	want := messages("m", n)
	groups := []*inbox{newInbox(), newInbox()}
	for _, in := range groups {
		subscribe(t, s.broker(t, DefaultConfig()), topic, in.handler(nil))
	}
	publishConcurrently(t, s.broker(t, DefaultConfig()), topic, want, 8)
	for i, in := range groups {
		in.waitDistinct(t, n, waitLong, fmt.Sprintf("group %d", i+1))
	}
	quiet(settleWindow(DefaultConfig()))
	for i, in := range groups {
		if err := checkExactlyOnce(in.counts(), want); err != nil {
			t.Errorf("group %d: %v", i+1, err)
		}
	}
}

// slowly is a handler tail that takes a little time, so that one consumer of a
// group cannot take every message before the other asks.
func slowly([]byte) error {
	time.Sleep(2 * time.Millisecond)
	return nil
}

func (s *byteSuite) testCompetingConsumers(t *testing.T) {
	cases := []struct {
		name    string
		brokers func(t *testing.T) (relay.Broker, relay.Broker)
	}{
		{"two Subscribe calls on one broker", func(t *testing.T) (relay.Broker, relay.Broker) {
			b := s.broker(t, DefaultConfig())
			return b, b
		}},
		{"two brokers of one group", func(t *testing.T) (relay.Broker, relay.Broker) {
			cfg := DefaultConfig()
			return s.broker(t, cfg), s.broker(t, cfg)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			const n = 200
			topic := NewTopic(t)
			want := messages("c", n)
			b1, b2 := c.brokers(t)
			in1, in2 := newInbox(), newInbox()
			subscribe(t, b1, topic, in1.handler(slowly))
			subscribe(t, b2, topic, in2.handler(slowly))
			publishConcurrently(t, s.broker(t, DefaultConfig()), topic, want, 4)
			union := func() int {
				u := in1.counts()
				for p := range in2.counts() {
					u[p]++
				}
				return len(u)
			}
			eventually(t, waitLong, func() bool { return union() >= n },
				"%d of %d distinct messages received by the group", union(), n)
			quiet(settleWindow(DefaultConfig()))
			if err := checkCompeting([]map[string]int{in1.counts(), in2.counts()}, want); err != nil {
				t.Error(err)
			}
		})
	}
}

func (s *byteSuite) testFanOut(t *testing.T) {
	const n = 100
	topic := NewTopic(t)
	want := messages("f", n)
	groups := []*inbox{newInbox(), newInbox(), newInbox()}
	for _, in := range groups {
		subscribe(t, s.broker(t, DefaultConfig()), topic, in.handler(nil))
	}
	publishAll(t, s.broker(t, DefaultConfig()), topic, want)
	for i, in := range groups {
		in.waitDistinct(t, n, waitLong, fmt.Sprintf("group %d", i+1))
	}
	quiet(settleWindow(DefaultConfig()))
	for i, in := range groups {
		if err := checkExactlyOnce(in.counts(), want); err != nil {
			t.Errorf("group %d: %v", i+1, err)
		}
	}
}

func (s *byteSuite) testTopicIsolation(t *testing.T) {
	topic := NewTopic(t)
	// Neighbours that a subject- or prefix-based mapping could confuse with topic.
	neighbours := []string{topic + ".sub", topic + ".dead", topic + "x", topic[:len(topic)-1]}
	in := newInbox()
	subscribe(t, s.broker(t, DefaultConfig()), topic, in.handler(nil))
	pub := s.broker(t, DefaultConfig())
	for _, nb := range neighbours {
		publish(t, pub, nb, []byte("from "+nb))
	}
	publish(t, pub, topic, []byte("own"))
	in.waitDistinct(t, 1, waitShort, "own topic")
	quiet(settleWindow(DefaultConfig()))
	if err := checkExactlyOnce(in.counts(), []string{"own"}); err != nil {
		t.Errorf("subscription on %q: %v", topic, err)
	}
}

func (s *byteSuite) testPublishBeforeSubscribe(t *testing.T) {
	const n = 50
	topic := NewTopic(t)
	want := messages("p", n)
	publishAll(t, s.broker(t, DefaultConfig()), topic, want)
	// Only a group that exists keeps a consumed message stored (relay's
	// default retention may be interest-based), so one group comes later.
	in := newInbox()
	subscribe(t, s.broker(t, DefaultConfig()), topic, in.handler(nil))
	in.waitDistinct(t, n, waitLong, "group subscribed after publish")
	quiet(settleWindow(DefaultConfig()))
	if err := checkExactlyOnce(in.counts(), want); err != nil {
		t.Error(err)
	}
}

func (s *byteSuite) testRedelivery(t *testing.T) {
	cases := []struct {
		name string
		fail func() error
	}{
		{"after a handler error", func() error { return errInduced }},
		{"after a handler panic", func() error { panic("pubsubtest: induced handler panic") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			topic := NewTopic(t)
			var calls atomic.Int32
			in := newInbox()
			// Fail every delivery but the last allowed one.
			subscribe(t, s.broker(t, cfg), topic, in.handler(func([]byte) error {
				if int(calls.Add(1)) < cfg.MaxDeliver {
					return c.fail()
				}
				return nil
			}))
			dead := newInbox()
			subscribe(t, s.broker(t, DefaultConfig()), topic+".dead", dead.handler(nil))
			publish(t, s.broker(t, DefaultConfig()), topic, []byte("r"))
			eventually(t, waitShort, func() bool { return in.len() >= cfg.MaxDeliver },
				"%d of %d deliveries made", in.len(), cfg.MaxDeliver)
			quiet(settleWindow(cfg))
			if err := checkDeliveries(in.len(), cfg.MaxDeliver); err != nil {
				t.Error(err)
			}
			if err := checkBackoff(in.times("r"), cfg.MinBackoff/2); err != nil {
				t.Error(err)
			}
			if n := dead.len(); n != 0 {
				t.Errorf("%d dead letters for a message whose last delivery succeeded, want none", n)
			}
		})
	}
}

func (s *byteSuite) testDeadLetter(t *testing.T) {
	cfg := DefaultConfig()
	topic := NewTopic(t)
	payload := []byte("dead\x00\xff letter")
	in := newInbox()
	subscribe(t, s.broker(t, cfg), topic, in.handler(func([]byte) error { return errInduced }))
	dead := newInbox()
	subscribe(t, s.broker(t, DefaultConfig()), topic+".dead", dead.handler(nil))
	publish(t, s.broker(t, DefaultConfig()), topic, payload)
	dead.waitDistinct(t, 1, waitShort, "dead-letter topic "+topic+".dead")
	quiet(settleWindow(cfg))
	if err := checkDeliveries(in.len(), cfg.MaxDeliver); err != nil {
		t.Errorf("source topic: %v", err)
	}
	if err := checkBackoff(in.times(string(payload)), cfg.MinBackoff/2); err != nil {
		t.Errorf("source topic: %v", err)
	}
	for _, r := range dead.receipts() {
		if err := checkPayload(r.payload, payload); err != nil {
			t.Errorf("dead letter: %v", err)
		}
	}
	if err := checkDeliveries(dead.len(), 1); err != nil {
		t.Errorf("dead-letter topic: %v", err)
	}
}

func (s *byteSuite) testPermanent(t *testing.T) {
	cases := []struct {
		name string
		err  error
	}{
		{"an error wrapping ErrPermanent", fmt.Errorf("cannot parse: %w", relay.ErrPermanent)},
		{"an error made by relay.Permanent", relay.Permanent(errInduced)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			topic := NewTopic(t)
			in := newInbox()
			subscribe(t, s.broker(t, cfg), topic, in.handler(func([]byte) error { return c.err }))
			dead := newInbox()
			subscribe(t, s.broker(t, DefaultConfig()), topic+".dead", dead.handler(nil))
			publish(t, s.broker(t, DefaultConfig()), topic, []byte("p"))
			dead.waitDistinct(t, 1, waitShort, "dead-letter topic")
			quiet(settleWindow(cfg))
			if err := checkDeliveries(in.len(), 1); err != nil {
				t.Errorf("source topic: %v", err)
			}
			if err := checkExactlyOnce(dead.counts(), []string{"p"}); err != nil {
				t.Errorf("dead-letter topic: %v", err)
			}
		})
	}
}

func (s *byteSuite) testOrder(t *testing.T) {
	if !s.h.Capabilities.Ordered {
		t.Skip("Capabilities.Ordered is false: the backend does not guarantee order")
	}
	const n = 100
	cfg := DefaultConfig()
	cfg.Concurrency = 1
	topic := NewTopic(t)
	want := messages("o", 2*n)
	pub := s.broker(t, DefaultConfig())
	// Half stored before the group exists, half published while it consumes.
	publishAll(t, pub, topic, want[:n])
	in := newInbox()
	subscribe(t, s.broker(t, cfg), topic, in.handler(nil))
	publishAll(t, pub, topic, want[n:])
	in.waitDistinct(t, len(want), waitLong, "ordered subscription")
	quiet(settleWindow(cfg))
	if err := checkOrder(in.payloads(), want); err != nil {
		t.Error(err)
	}
}

func (s *byteSuite) testCloseConcurrent(t *testing.T) {
	b := s.broker(t, DefaultConfig())
	subscribe(t, b, NewTopic(t), func([]byte) error { return nil })
	const closers = 10
	errs := make(chan error, closers)
	var wg sync.WaitGroup
	for range closers {
		wg.Go(func() { errs <- b.Close() })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitShort):
		t.Fatalf("%d concurrent Close calls did not all return within %v", closers, waitShort)
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Close: %v", err)
		}
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close after Close: %v", err)
	}
}

func (s *byteSuite) testCloseWaits(t *testing.T) {
	b := s.broker(t, DefaultConfig())
	started := make(chan struct{})
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // runs before the broker's Close, even after a failure
	var once sync.Once
	var returned atomic.Bool
	topic := NewTopic(t)
	subscribe(t, b, topic, func([]byte) error {
		once.Do(func() { close(started) })
		<-release
		time.Sleep(10 * time.Millisecond) // widen the window in which an early Close would show
		returned.Store(true)
		return nil
	})
	publish(t, b, topic, []byte("w"))
	select {
	case <-started:
	case <-time.After(waitShort):
		t.Fatalf("handler not called within %v", waitShort)
	}
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a handler was still running", err)
	case <-time.After(100 * time.Millisecond): // Close must still be waiting
	}
	releaseOnce()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
		if !returned.Load() {
			t.Error("Close returned before the running handler returned")
		}
	case <-time.After(waitShort):
		t.Fatalf("Close did not return within %v after the handler was released", waitShort)
	}
}

func (s *byteSuite) testErrClosed(t *testing.T) {
	b := s.broker(t, DefaultConfig())
	topic := NewTopic(t)
	subscribe(t, b, topic, func([]byte) error { return nil })
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitShort)
	defer cancel()
	if err := checkErrorIs("Publish after Close", b.Publish(ctx, topic, []byte("x")), relay.ErrClosed); err != nil {
		t.Error(err)
	}
	if err := checkErrorIs("Subscribe after Close", b.Subscribe(NewTopic(t), func([]byte) error { return nil }), relay.ErrClosed); err != nil {
		t.Error(err)
	}
}

func (s *byteSuite) testNothingLostOnClose(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Concurrency = 1 // so that the second message waits, unfinished, behind the first
	topic := NewTopic(t)
	want := []string{"first", "second"}
	a := s.broker(t, cfg)
	started := make(chan struct{})
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // runs before the broker's Close, even after a failure
	var once sync.Once
	subscribe(t, a, topic, func([]byte) error {
		once.Do(func() { close(started) })
		<-release
		return errInduced // the handler that was running at Close fails
	})
	publishAll(t, s.broker(t, DefaultConfig()), topic, want)
	select {
	case <-started:
	case <-time.After(waitShort):
		t.Fatalf("handler not called within %v", waitShort)
	}
	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	var closeErr error
	select {
	case closeErr = <-closed:
		t.Errorf("Close returned while a handler was still running")
	case <-time.After(50 * time.Millisecond): // let Close begin before the handler fails
		releaseOnce()
		select {
		case closeErr = <-closed:
		case <-time.After(waitShort):
			t.Fatalf("Close did not return within %v", waitShort)
		}
	}
	if closeErr != nil {
		t.Errorf("Close: %v", closeErr)
	}
	in := newInbox()
	subscribe(t, s.broker(t, cfg), topic, in.handler(nil))
	// A backend may wait its ack wait (or claim timeout) before redelivering.
	in.waitDistinct(t, len(want), waitLong+2*cfg.AckWait, "other broker of the group")
	if err := checkAtLeastOnce(in.counts(), want); err != nil {
		t.Error(err)
	}
}

func (s *byteSuite) testNoGoroutineLeft(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	// The broker lives in a child test so that the harness's own cleanups
	// (connections it made for the broker) have run before the check.
	t.Run("a broker is used and closed", func(t *testing.T) {
		b := s.broker(t, DefaultConfig())
		topic := NewTopic(t)
		in := newInbox()
		subscribe(t, b, topic, in.handler(nil))
		subscribe(t, b, NewTopic(t), in.handler(nil))
		publishAll(t, b, topic, messages("g", 20))
		in.waitDistinct(t, 20, waitShort, "subscription")
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	goleak.VerifyNone(t, ignore)
}

func (s *byteSuite) testInvalidTopic(t *testing.T) {
	b := s.broker(t, DefaultConfig())
	cases := []struct{ name, topic string }{
		{"empty", ""},
		{"only white space", " "},
		{"inner space", "a b"},
		{"tab", "a\tb"},
		{"wildcard *", "a.*"},
		{"wildcard >", "a.>"},
		{"empty token", "a..b"},
		{"leading dot", ".a"},
		{"trailing dot", "a."},
		{"256 bytes", strings.Repeat("a", relay.MaxTopicLength+1)},
		{"reserved $ prefix", "$JS.API"},
		{"invalid UTF-8", "a\xffb"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitShort)
			defer cancel()
			err := b.Publish(ctx, c.topic, []byte("x"))
			if err := checkErrorIs(fmt.Sprintf("Publish(%q)", c.topic), err, relay.ErrInvalidTopic); err != nil {
				t.Error(err)
			}
			if err := checkErrorShape(err, "publish", c.topic); err != nil {
				t.Error(err)
			}
			err = b.Subscribe(c.topic, func([]byte) error { return nil })
			if err := checkErrorIs(fmt.Sprintf("Subscribe(%q)", c.topic), err, relay.ErrInvalidTopic); err != nil {
				t.Error(err)
			}
			if err := checkErrorShape(err, "subscribe", c.topic); err != nil {
				t.Error(err)
			}
		})
	}
}

func (s *byteSuite) testNilHandler(t *testing.T) {
	b := s.broker(t, DefaultConfig())
	if err := checkErrorIs("Subscribe with a nil handler", b.Subscribe(NewTopic(t), nil), relay.ErrNilHandler); err != nil {
		t.Error(err)
	}
}

func (s *byteSuite) testPublishContext(t *testing.T) {
	b := s.broker(t, DefaultConfig())
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	cases := []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"canceled", canceled, context.Canceled},
		{"deadline exceeded", expired, context.DeadlineExceeded},
	}
	const prompt = 2 * time.Second
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			topic := NewTopic(t)
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- b.Publish(c.ctx, topic, []byte("x")) }()
			select {
			case err := <-done:
				if err := checkErrorIs("Publish", err, c.want); err != nil {
					t.Error(err)
				}
				if d := time.Since(start); d > prompt {
					t.Errorf("Publish took %v with a done context, want under %v", d, prompt)
				}
			case <-time.After(waitShort):
				t.Fatalf("Publish with a done context did not return within %v", waitShort)
			}
		})
	}
}

// shutdowner is the Close with a context that backends may offer beside
// Close (all of relay's do).
type shutdowner interface {
	Shutdown(ctx context.Context) error
}

// callNoPanic runs f and returns its error, or an error saying that it
// panicked: a nil context must be refused, not crash the process.
func callNoPanic(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("a panic: %v", v)
		}
	}()
	return f()
}

func (s *byteSuite) testNilContext(t *testing.T) {
	b := s.broker(t, DefaultConfig())
	topic := NewTopic(t)
	var nilCtx context.Context // a variable: a nil literal is what vet-like checkers flag
	err := callNoPanic(func() error { return b.Publish(nilCtx, topic, []byte("x")) })
	if err := checkErrorIs("Publish with a nil context", err, relay.ErrNilContext); err != nil {
		t.Error(err)
	}
	if sd, ok := b.(shutdowner); ok {
		err := callNoPanic(func() error { return sd.Shutdown(nilCtx) })
		if err := checkErrorIs("Shutdown with a nil context", err, relay.ErrNilContext); err != nil {
			t.Error(err)
		}
	}
	// Nothing was sent, and the refused Shutdown closed nothing: the broker
	// still publishes and delivers, and the first message is the good one.
	got := make(chan []byte, 2)
	subscribe(t, b, topic, func(p []byte) error { got <- p; return nil })
	publish(t, b, topic, []byte("after"))
	select {
	case p := <-got:
		if string(p) != "after" {
			t.Errorf("first delivery %q, want %q: the refused Publish sent something", p, "after")
		}
	case <-time.After(waitShort):
		t.Fatalf("nothing delivered within %v after the nil-context calls", waitShort)
	}
}

func (s *byteSuite) testPayloadTooLarge(t *testing.T) {
	max := s.h.Capabilities.MaxPayload
	if max <= 0 {
		t.Skip("Capabilities.MaxPayload is 0: no payload limit declared")
	}
	topic := NewTopic(t)
	in := newInbox()
	subscribe(t, s.broker(t, DefaultConfig()), topic, in.handler(nil))
	pub := s.broker(t, DefaultConfig())
	ctx, cancel := context.WithTimeout(context.Background(), waitShort)
	defer cancel()
	err := pub.Publish(ctx, topic, make([]byte, max+1))
	if err := checkErrorIs(fmt.Sprintf("Publish of %d bytes (MaxPayload %d)", max+1, max), err, relay.ErrPayloadTooLarge); err != nil {
		t.Error(err)
	}
	// Nothing of the rejected payload may reach the subscription.
	publish(t, pub, topic, []byte("after"))
	in.waitDistinct(t, 1, waitShort, "subscription")
	quiet(settleWindow(DefaultConfig()))
	if in.distinct() != 1 || in.counts()["after"] != 1 {
		t.Errorf("received %d messages (%d distinct), want only the small one published after the rejected one", in.len(), in.distinct())
	}
}

func (s *byteSuite) testPersistAcrossRestart(t *testing.T) {
	switch {
	case s.h.Restart == nil:
		t.Skip("Harness.Restart is nil: cannot restart the backend")
	case !s.h.Capabilities.Persistent:
		t.Skip("Capabilities.Persistent is false: messages need not survive a restart")
	}
	const n = 20
	topic := NewTopic(t)
	want := messages("s", n)
	publishAll(t, s.broker(t, DefaultConfig()), topic, want)
	s.h.Restart(t)
	in := newInbox()
	b := s.broker(t, DefaultConfig())
	var err error
	// Subscribe may fail while the backend reconnects; it must succeed soon.
	if !poll(waitLong, func() bool { err = b.Subscribe(topic, in.handler(nil)); return err == nil }) {
		t.Fatalf("Subscribe after restart kept failing for %v: %v", waitLong, err)
	}
	in.waitDistinct(t, n, waitLong, "group subscribed after restart")
	if err := checkAtLeastOnce(in.counts(), want); err != nil {
		t.Error(err)
	}
}

func (s *byteSuite) testReconnect(t *testing.T) {
	if s.h.Restart == nil {
		t.Skip("Harness.Restart is nil: cannot restart the backend")
	}
	const n = 10
	topic := NewTopic(t)
	before, after := messages("before", n), messages("after", n)
	in := newInbox()
	subscribe(t, s.broker(t, DefaultConfig()), topic, in.handler(nil))
	pub := s.broker(t, DefaultConfig())
	publishAll(t, pub, topic, before)
	in.waitDistinct(t, n, waitLong, "subscription before restart")
	s.h.Restart(t)
	for _, p := range after {
		publishUntil(t, pub, topic, []byte(p), waitLong)
	}
	in.waitDistinct(t, 2*n, waitLong, "subscription after restart")
	// Redelivery across a restart is allowed; loss is not.
	if err := checkAtLeastOnce(in.counts(), append(before, after...)); err != nil {
		t.Error(err)
	}
}
