package pubsubtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit"
)

// testRaceClose runs Publish from 8 goroutines and Subscribe from another
// while 4 goroutines call Close at once: every Publish and Subscribe returns
// nil or ErrClosed, every Close returns nil, and every message whose Publish
// returned nil is handled, by the racing subscriptions or by a later broker
// of the group. It guards against a Close that is not safe for concurrent
// use, a Publish accepted and dropped by a closing broker, and messages
// taken by a closing subscription and lost.
func (s *byteSuite) testRaceClose(t *testing.T) {
	cfg := DefaultConfig()
	topic := NewTopic(t)
	b := s.broker(t, cfg)
	var handled sync.Map // payload → struct{}
	record := func(p []byte) error { handled.Store(string(p), struct{}{}); return nil }
	r := &race{}
	r.publish(t, func(p string) error {
		// Generous: on a loaded machine a Publish racing Close may wait its
		// turn for seconds; only an error other than ErrClosed breaks the
		// contract.
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		return b.Publish(ctx, topic, []byte(p))
	})
	r.subscribe(t, func() error { return b.Subscribe(topic, record) })
	r.waitAccepted(t)
	var closers sync.WaitGroup
	for range 4 {
		closers.Go(func() {
			assert.NoError(t, closeWithin(b.Close), "concurrent Close")
		})
	}
	closers.Wait()
	r.wg.Wait()

	subscribe(t, s.broker(t, cfg), topic, record)
	r.checkHandled(t, &handled, waitLong+2*cfg.AckWait) // the ack wait, then claims
}

// race runs the publishers and the subscriber of a Close race: 8 goroutines
// publish until they see ErrClosed (at most raceMaxPublish messages each) and
// one subscribes until it sees ErrClosed (at most raceMaxSubscribe times), so
// that calls are in flight whenever Close runs, however fast the backend.
type race struct {
	wg       sync.WaitGroup
	mu       sync.Mutex
	accepted []string
}

const (
	raceMaxPublish   = 2000
	raceMaxSubscribe = 200
)

// publish starts the publishers; publish sends one payload.
func (r *race) publish(t *testing.T, publish func(payload string) error) {
	for g := range 8 {
		r.wg.Go(func() {
			for i := range raceMaxPublish {
				p := fmt.Sprintf("%d-%d", g, i)
				err := publish(p)
				switch {
				case err == nil:
					r.mu.Lock()
					r.accepted = append(r.accepted, p)
					r.mu.Unlock()
				case errors.Is(err, relay.ErrClosed):
					return
				default:
					t.Errorf("Publish during Close = %v, want nil or ErrClosed", err)
					return
				}
			}
		})
	}
}

// subscribe starts the subscriber; subscribe makes one subscription.
func (r *race) subscribe(t *testing.T, subscribe func() error) {
	r.wg.Go(func() {
		for range raceMaxSubscribe {
			err := subscribe()
			switch {
			case errors.Is(err, relay.ErrClosed):
				return
			case err != nil:
				t.Errorf("Subscribe during Close = %v, want nil or ErrClosed", err)
				return
			}
			time.Sleep(time.Millisecond) // spread the calls over the race
		}
	})
}

// waitAccepted waits until a Publish succeeded.
func (r *race) waitAccepted(t *testing.T) {
	t.Helper()
	eventually(t, waitShort, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.accepted) > 0 },
		"no Publish succeeded")
}

// checkHandled waits, at most timeout, until every accepted payload is a key
// of handled, and fails t with the ones that are not. Call it once every
// Publish has returned.
func (r *race) checkHandled(t *testing.T, handled *sync.Map, timeout time.Duration) {
	t.Helper()
	r.mu.Lock()
	want := append([]string(nil), r.accepted...)
	r.mu.Unlock()
	var missing []string
	poll(timeout, func() bool {
		missing = missing[:0]
		for _, p := range want {
			if _, ok := handled.Load(p); !ok {
				missing = append(missing, p)
			}
		}
		return len(missing) == 0
	})
	if len(missing) > 0 {
		t.Errorf("%d of %d accepted messages never handled: %s", len(missing), len(want), list(missing))
	}
}

// closeWithin calls close and returns its error, or an error when it does
// not return within waitShort (its goroutine is left behind then: the test
// has failed).
func closeWithin(close func() error) error {
	done := make(chan error, 1)
	go func() { done <- close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(waitShort):
		return fmt.Errorf("did not return within %v", waitShort)
	}
}

// readAheadWait bounds how long [byteSuite.waitHeld] waits for a
// subscription to take messages ahead.
const readAheadWait = 2 * time.Second

// waitHeld waits, at most readAheadWait, until group holds at least n
// messages of topic delivered and not acknowledged, as the harness's
// inspector counts them; without an inspector it waits a fixed 300ms. A
// backend that does not take messages ahead of its handlers (memory's
// handlers take them one at a time) has nothing to hand back: the row then
// checks less, and says so in the log.
func (s *byteSuite) waitHeld(t *testing.T, topic, group string, n int) {
	t.Helper()
	if s.h.NewInspector == nil {
		time.Sleep(300 * time.Millisecond) // nothing to observe: a window, not a synchronisation
		return
	}
	in := s.h.NewInspector(t)
	var pending uint64
	var err error
	ok := poll(readAheadWait, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), waitShort)
		defer cancel()
		var info relay.TopicInfo
		if info, err = in.Topic(ctx, topic); err != nil {
			return false
		}
		for _, g := range info.Groups {
			if g.Group == group {
				pending = g.Pending
			}
		}
		return pending >= uint64(n)
	})
	if !ok {
		t.Logf("group %q holds %d messages of %q after %v (err %v), not %d: the backend does not take messages ahead",
			group, pending, topic, readAheadWait, err, n)
	}
}

// testHandedBack has a subscription with Concurrency 1 and MaxDeliver 1 take
// a second message ahead while its only handler is busy, then closes it:
// Close hands the second message back unprocessed. A later broker of the
// group handles it (or the closing one, if a worker took it as Close began),
// and it is not dead-lettered before that, though a
// backend may count the handed-back delivery as an attempt. It guards
// against dead-lettering messages no handler ever saw, and against
// handed-back messages never redelivered.
func (s *byteSuite) testHandedBack(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxDeliver, cfg.Concurrency, cfg.AckWait = 1, 1, time.Second
	topic := NewTopic(t)
	dead := s.watchDead(t, topic+".dead")
	b1 := s.broker(t, cfg)
	publishAll(t, b1, topic, []string{"first", "second"})
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // before the broker's Close, even after a failure
	// A worker may still take "second" as Close begins and handle it: then
	// it was handled, which is all the row asks.
	var handled atomic.Int32
	subscribe(t, b1, topic, func(p []byte) error {
		if string(p) == "second" {
			handled.Add(1)
			return nil
		}
		started <- struct{}{}
		<-release
		return nil
	})
	select {
	case <-started:
	case <-time.After(waitShort):
		t.Fatalf("first message not delivered within %v", waitShort)
	}
	s.waitHeld(t, topic, cfg.Group, 2)
	closed := make(chan error, 1)
	go func() { closed <- b1.Close() }()
	waitClosing(t, b1, NewTopic(t))
	releaseOnce()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(waitShort):
		t.Fatalf("Close did not return within %v of the handler's return", waitShort)
	}

	subscribe(t, s.broker(t, cfg), topic, func(p []byte) error {
		if string(p) == "second" {
			handled.Add(1)
		}
		return nil
	})
	deadline := time.After(waitShort + 2*cfg.AckWait)
	for handled.Load() == 0 {
		select {
		case m := <-dead.ch:
			t.Fatalf("a message handed back by Close was dead-lettered unhandled: payload %q, metadata %v", m.payload, m.metadata)
		case <-deadline:
			t.Fatalf("a message handed back by Close was not redelivered within %v; the group's state: %s",
				waitShort+2*cfg.AckWait, s.groupState(t, topic, cfg.Group))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// groupState describes group on topic as the harness's inspector sees it,
// for a failure message.
func (s *byteSuite) groupState(t *testing.T, topic, group string) string {
	if s.h.NewInspector == nil {
		return "unknown (no inspector)"
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitShort)
	defer cancel()
	info, err := s.h.NewInspector(t).Topic(ctx, topic)
	if err != nil {
		return err.Error()
	}
	for _, g := range info.Groups {
		if g.Group == group {
			return fmt.Sprintf("%+v", g)
		}
	}
	return fmt.Sprintf("no group %q in %+v", group, info)
}

// waitClosing polls until Publish on b returns ErrClosed, that is until a
// Close running in another goroutine has begun.
func waitClosing(t *testing.T, b relay.Broker, topic string) {
	t.Helper()
	eventually(t, waitShort, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), waitShort)
		defer cancel()
		return errors.Is(b.Publish(ctx, topic, []byte("probe")), relay.ErrClosed)
	}, "Publish does not return ErrClosed while Close runs")
}

// testUnackedAtClose receives a message on a subscriber with MaxDeliver 1,
// neither acks nor nacks it, and closes the subscriber: a new subscriber of
// the group receives it, and it is not dead-lettered unprocessed, though a
// backend may count the first delivery as an attempt. It guards against a
// message out on the channel at Close being lost, or dead-lettered without
// any handler having processed it.
func (s *wmSuite) testUnackedAtClose(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxDeliver, cfg.Concurrency, cfg.AckWait = 1, 1, 500*time.Millisecond
	topic := NewTopic(t)
	dead := subscribeWM(t, s.subscriber(t, DefaultConfig()), topic+".dead")
	publishWM(t, s.publisher(t, DefaultConfig()), topic, message.NewMessage(watermill.NewUUID(), []byte("m")))
	s1, err := s.h.NewSubscriber(t, cfg)
	if err != nil {
		t.Fatalf("NewSubscriber: %v", err)
	}
	t.Cleanup(func() { _ = testkit.CloseWithin(t, waitLong, s1.Close, "subscriber Close at cleanup") }) // closed below; here for an early failure
	ch := subscribeWM(t, s1, topic)
	receiveWM(t, ch, waitShort, "first subscriber") // never acked
	if err := closeWithin(s1.Close); err != nil {
		t.Fatalf("Close with a message out unacked: %v", err)
	}
	ch2 := subscribeWM(t, s.subscriber(t, cfg), topic)
	select {
	case m := <-ch2:
		m.Ack()
	case m := <-dead:
		m.Ack()
		t.Errorf("a message out unacked at Close was dead-lettered unprocessed: metadata %v", m.Metadata)
	case <-time.After(waitLong):
		t.Errorf("a message out unacked at Close was not redelivered within %v", waitLong)
	}
}

// testFirstSettleWins acks twice, acks then nacks, and nacks then acks: nothing
// panics, an acked message is not delivered again (within a settle window),
// and a message nacked first is redelivered. It guards against settling one
// delivery twice.
func (s *wmSuite) testFirstSettleWins(t *testing.T) {
	cfg := DefaultConfig()
	topic := NewTopic(t)
	ch := subscribeWM(t, s.subscriber(t, cfg), topic)
	pub := s.publisher(t, DefaultConfig())
	for i := range 3 {
		publishWM(t, pub, topic, message.NewMessage(watermill.NewUUID(), []byte{byte(i)}))
	}
	seen := map[byte]int{}
	deadline := time.After(waitShort)
	for len(seen) < 3 || seen[2] < 2 {
		select {
		case m := <-ch:
			seen[m.Payload[0]]++
			switch {
			case m.Payload[0] == 0:
				m.Ack()
				m.Ack()
			case m.Payload[0] == 1:
				m.Ack()
				m.Nack()
			case seen[2] == 1:
				m.Nack()
				m.Ack()
			default:
				m.Ack()
			}
		case <-deadline:
			t.Fatalf("deliveries per message after %v: %v; want messages 0 and 1 once, message 2 (nacked first) twice", waitShort, seen)
		}
	}
	if seen[0] != 1 || seen[1] != 1 {
		t.Errorf("deliveries per message: %v; want messages 0 and 1 (acked first) once", seen)
	}
	select {
	case m := <-ch:
		m.Ack()
		t.Errorf("message %d delivered again after it was acked (deliveries %v)", m.Payload[0], seen)
	case <-time.After(settleWindow(cfg) + 200*time.Millisecond):
	}
}

// testRaceClose is the Watermill face of [byteSuite.testRaceClose]: 8
// goroutines call Publisher.Publish and another Subscriber.Subscribe (each
// channel consumed and acked) while 4 goroutines close the publisher and the
// subscriber at once. Every Publish and Subscribe returns nil or ErrClosed,
// every Close returns nil, every channel is closed, and every message whose
// Publish returned nil is handled, on a racing channel or by a later
// subscriber of the group. It guards against a Close that is not safe for
// concurrent use, a Publish accepted and dropped by a closing publisher, a
// channel of a Subscribe racing Close left open, and messages out on a
// closing subscriber's channels lost.
func (s *wmSuite) testRaceClose(t *testing.T) {
	cfg := DefaultConfig()
	topic := NewTopic(t)
	pub, sub := s.publisher(t, cfg), s.subscriber(t, cfg)
	var handled sync.Map // payload → struct{}
	var consumers sync.WaitGroup
	consume := func(ch <-chan *message.Message) {
		consumers.Go(func() {
			for m := range ch {
				handled.Store(string(m.Payload), struct{}{})
				m.Ack()
			}
		})
	}
	r := &race{}
	r.publish(t, func(p string) error { return pub.Publish(topic, message.NewMessage(watermill.NewUUID(), []byte(p))) })
	r.subscribe(t, func() error {
		ch, err := sub.Subscribe(context.Background(), topic)
		if err == nil {
			consume(ch)
		}
		return err
	})
	r.waitAccepted(t)
	var closers sync.WaitGroup
	for _, c := range []struct {
		name  string
		close func() error
	}{{"publisher", pub.Close}, {"subscriber", sub.Close}, {"publisher", pub.Close}, {"subscriber", sub.Close}} {
		closers.Go(func() {
			assert.NoError(t, closeWithin(c.close), "concurrent %s Close", c.name)
		})
	}
	closers.Wait()
	r.wg.Wait()
	require.True(t, waitGroupWithin(&consumers, waitShort),
		"a channel returned by Subscribe is still open %v after the subscriber's Close returned", waitShort)

	consume(subscribeWM(t, s.subscriber(t, cfg), topic))
	r.checkHandled(t, &handled, waitLong+2*cfg.AckWait) // the ack wait, then claims
}

// waitGroupWithin reports whether wg is done within timeout (its waiting
// goroutine is left behind otherwise: the test has failed).
func waitGroupWithin(wg *sync.WaitGroup, timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// testHandedBack is the Watermill face of [byteSuite.testHandedBack]: a
// subscriber with Concurrency 1 and MaxDeliver 1 gets the first of five
// messages on its channel, may take others ahead, and is closed with the
// first neither acked nor nacked. Close hands back every message not acked:
// the next subscriber of the group receives all five, and none is
// dead-lettered, though a backend may count a handed-back delivery as an
// attempt. It guards against dead-lettering messages no consumer processed,
// and against handed-back messages lost.
func (s *wmSuite) testHandedBack(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxDeliver, cfg.Concurrency, cfg.AckWait = 1, 1, time.Second
	topic := NewTopic(t)
	dead := subscribeWM(t, s.subscriber(t, DefaultConfig()), topic+".dead")
	want := messages("h", 5)
	pub := s.publisher(t, DefaultConfig())
	for _, p := range want {
		publishWM(t, pub, topic, message.NewMessage(watermill.NewUUID(), []byte(p)))
	}
	s1, err := s.h.NewSubscriber(t, cfg)
	require.NoError(t, err, "NewSubscriber(%+v)", cfg)
	t.Cleanup(func() { _ = testkit.CloseWithin(t, waitLong, s1.Close, "subscriber Close at cleanup") }) // closed below; here for an early failure
	// The first message is neither acked nor nacked.
	receiveWM(t, subscribeWM(t, s1, topic), waitShort, "first subscriber")
	s.bytes.waitHeld(t, topic, cfg.Group, 2)
	require.NoError(t, closeWithin(s1.Close), "Close with a message out unacked and others taken ahead")

	got := map[string]int{}
	rest := subscribeWM(t, s.subscriber(t, cfg), topic)
	deadline := time.After(waitShort + 2*cfg.AckWait)
	for len(got) < len(want) {
		select {
		case m := <-rest:
			m.Ack()
			got[string(m.Payload)]++
		case m := <-dead:
			m.Ack()
			t.Fatalf("a message handed back by Close was dead-lettered unhandled: payload %q, metadata %v", m.Payload, m.Metadata)
		case <-deadline:
			t.Fatalf("messages handed back by Close not redelivered within %v (received %v of %s); the group's state: %s",
				waitShort+2*cfg.AckWait, got, list(want), s.bytes.groupState(t, topic, cfg.Group))
		}
	}
	assert.NoError(t, checkAtLeastOnce(got, want))
	select {
	case m := <-dead:
		m.Ack()
		t.Errorf("a message was dead-lettered though every one was acked: payload %q, metadata %v", m.Payload, m.Metadata)
	case <-time.After(settleWindow(cfg)):
	}
}
