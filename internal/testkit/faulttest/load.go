package faulttest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-relay/relay"
)

// load publishes fresh ids to a topic from several goroutines, with a pause
// between publishes, until stopped, recording each outcome in a ledger.
type load struct {
	next atomic.Int64
	stop chan struct{}
	wg   sync.WaitGroup
}

// startLoad starts workers publishers on br, each publishing, bounded by
// perCall, and pausing pause between publishes. Publish errors are expected
// during faults and only counted.
// steadyLoad opens a publishing and a consuming broker with open, consumes
// topic into l, starts the network cases' load (two publishers, a pause of
// 10 ms between calls, 2 s per call) and waits for a steady state: everything
// published in the first second consumed (within 30 s), else it fails t,
// naming what the state was wanted before. stop halts the load, then closes
// the consumer and the publisher.
func steadyLoad(t testing.TB, open func() relay.Broker, topic string, l *Ledger, before string) (ld *load, stop func()) {
	t.Helper()
	pub, cons := open(), open()
	consume(t, cons, topic, l)
	ld = startLoad(pub, topic, l, 2, 10*time.Millisecond, 2*time.Second)
	stop = func() {
		ld.halt()
		closeBroker(t, cons)
		closeBroker(t, pub)
	}
	time.Sleep(time.Second)
	if drained(l, 30*time.Second) < 0 {
		stop()
		t.Fatalf("no steady state before %s: messages not consumed within 30 s", before)
	}
	return ld, stop
}

func startLoad(br relay.Broker, topic string, l *Ledger, workers int, pause, perCall time.Duration) *load {
	ld := &load{stop: make(chan struct{})}
	for range workers {
		ld.wg.Go(func() {
			for {
				select {
				case <-ld.stop:
					return
				case <-time.After(pause):
				}
				id := int(ld.next.Add(1))
				ctx, cancel := context.WithTimeout(context.Background(), perCall)
				err := br.Publish(ctx, topic, Payload(id))
				cancel()
				l.Published(id, err)
			}
		})
	}
	return ld
}

// halt stops publishing and waits for the publishes in flight.
func (ld *load) halt() {
	select {
	case <-ld.stop:
	default:
		close(ld.stop)
	}
	ld.wg.Wait()
}

// consume subscribes a handler that records every delivery as handled, and
// dead letters of topic as dead, on br.
func consume(t testing.TB, br relay.Broker, topic string, l *Ledger) {
	t.Helper()
	if err := br.Subscribe(topic, func(p []byte) error {
		id := idOf(t, p)
		l.Attempt(id)
		l.Handled(id)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	consumeDead(t, br, topic, l)
}

// consumeDead subscribes a handler that records the dead letters of topic
// (its default dead-letter topic) as dead, on br.
func consumeDead(t testing.TB, br relay.Broker, topic string, l *Ledger) {
	t.Helper()
	if err := br.Subscribe(relay.DefaultDeadLetterTopic(topic), func(p []byte) error {
		l.Dead(idOf(t, p))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// drained waits until every id confirmed before the call is handled or
// dead-lettered, and returns how long that took, or -1 after timeout.
func drained(l *Ledger, timeout time.Duration) time.Duration {
	start := time.Now()
	ids := l.Confirmed()
	if !waitFor(timeout, func() bool { return len(l.Missing(ids)) == 0 }) {
		return -1
	}
	return time.Since(start)
}

// caughtUp waits until every message whose Publish had started by now has
// been published (or failed) and, if confirmed, consumed, and returns how
// long that took, or -1 after timeout: the time the consumer needs to catch
// up with the publishers.
func (ld *load) caughtUp(l *Ledger, timeout time.Duration) time.Duration {
	start := time.Now()
	maxID := int(ld.next.Load())
	if !waitFor(timeout, func() bool { return l.settledUpTo(maxID) }) {
		return -1
	}
	return time.Since(start)
}
