package faulttest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/pubsubtest"
)

// RunGracefulShutdown closes a consumer while 1,000 messages are in flight
// (published and being handled, 32 handlers at once, each taking a few
// milliseconds), then starts a new broker of the same group, as a restarted
// process would. Every message must be handled: either by the first broker,
// which then acked it (so the second must not get it again), or by the
// second. No handler may run after Close returned, and the first broker and
// its client must leave no goroutine behind (goleak).
//
// Budget: 1,000 messages (both modes); Close within 30 s; all handled within
// 60 s.
func RunGracefulShutdown(t *testing.T, b Backend) {
	runShutdown(t, b, "graceful-shutdown", 2*time.Second, 60*time.Second)
}

// RunCloseReturnsUnhandled is [RunGracefulShutdown] with an ack wait of 30 s,
// for a backend whose Close gives the deliveries it fetched but did not
// handle back to the group at once (natsjs: Nak; memory): the second broker
// must then handle every remaining message within 10 s, long before the ack
// wait would have returned them. A backend that leaves them pending until the
// ack wait or claim timeout (redisstreams, by design) does not run it.
//
// Budget: 1,000 messages; all handled within 10 s of the second Subscribe.
func RunCloseReturnsUnhandled(t *testing.T, b Backend) {
	runShutdown(t, b, "close-returns-unhandled", 30*time.Second, 10*time.Second)
}

func runShutdown(t *testing.T, b Backend, fault string, ackWait, bound time.Duration) {
	const n = 1000
	topic, group := names(t, b)
	cfg := pubsubtest.Config{Group: group, MaxDeliver: 5, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Concurrency: 32, AckWait: ackWait}
	addr := addrOf(b)
	l := NewLedger()

	// The group exists before anything is published, so that the
	// server-side state of the group (for NATS, the durable consumer's
	// goroutines) predates the goroutine snapshot below.
	warm := newBroker(t, b, addr, cfg)
	if err := warm.Subscribe(topic, func([]byte) error { return fmt.Errorf("warm-up broker got a message") }); err != nil {
		t.Fatal(err)
	}
	closeBroker(t, warm)

	pub := newBroker(t, b, addr, cfg)
	defer closeBroker(t, pub)
	publishAll(t, pub, topic, l, 0, n, 8, 10*time.Second)

	var (
		atClose  int64
		closeDur time.Duration
	)
	fb := newFirstBroker()
	snapshot := goleak.IgnoreCurrent()
	t.Run("close-under-load", func(t *testing.T) {
		first := newBroker(t, b, addr, cfg)
		if err := first.Subscribe(topic, fb.handler(t, l, func(id int) time.Duration { return time.Duration(2+id%7) * time.Millisecond })); err != nil {
			t.Fatal(err)
		}
		if !waitFor(30*time.Second, func() bool { return fb.count() >= n/4 }) {
			t.Fatal("the first broker handled fewer than a quarter of the messages in 30 s")
		}
		atClose = fb.inFlight.Load()
		start := time.Now()
		closeBroker(t, first)
		closeDur = time.Since(start)
		fb.closed.Store(true)
		if got := fb.inFlight.Load(); got != 0 {
			t.Errorf("%d handlers still running after Close returned", got)
		}
	})
	// The first broker's client was closed by the sub-test's cleanup.
	goleak.VerifyNone(t, snapshot)

	firstCount := fb.count()
	second := newBroker(t, b, addr, cfg)
	defer closeBroker(t, second)
	start := time.Now()
	if err := second.Subscribe(topic, fb.next(t, l)); err != nil {
		t.Fatal(err)
	}
	ids := l.Confirmed()
	if !waitFor(bound, func() bool { return len(l.Missing(ids)) == 0 }) {
		t.Errorf("%d of %d messages not handled within %s of the new broker's Subscribe (ack wait %s), e.g. %v",
			len(l.Missing(ids)), n, bound, ackWait, head(l.Missing(ids)))
		waitFor(ackWait+30*time.Second, func() bool { return len(l.Missing(ids)) == 0 })
	}
	recovery := time.Since(start)
	time.Sleep(500 * time.Millisecond) // late redeliveries
	if fb.late.Load() != 0 {
		t.Errorf("%d handler calls of the first broker started after its Close returned", fb.late.Load())
	}
	if fb.again.Load() != 0 {
		t.Errorf("%d messages handled (handler returned nil) by the first broker before its Close were delivered again to the second: not acked by Close",
			fb.again.Load())
	}
	messages, lost, dups := l.Tally()
	if lost != 0 {
		t.Errorf("lost %d messages", lost)
	}
	report(t, fault, b, messages, lost, dups, recovery,
		fmt.Sprintf("in_flight_at_close=%d close=%s handled_before_close=%d redelivered_after_ack=%d",
			atClose, closeDur.Round(time.Millisecond), firstCount, fb.again.Load()))
}

// firstBroker is the bookkeeping of the broker that a Close case closes
// under load: which messages its handler finished, how many handler calls
// run, and how many started after its Close returned.
type firstBroker struct {
	mu       sync.Mutex
	finished map[int]bool // the handler returned nil
	closed   atomic.Bool  // Close returned
	late     atomic.Int64 // handler calls started after that
	inFlight atomic.Int64
	again    atomic.Int64 // deliveries to the next broker of messages this one finished
}

func newFirstBroker() *firstBroker { return &firstBroker{finished: map[int]bool{}} }

// handler records each call in f and in l, sleeps work(id) as the message's
// processing, and returns nil.
func (f *firstBroker) handler(t testing.TB, l *Ledger, work func(id int) time.Duration) relay.Handler {
	return func(p []byte) error {
		if f.closed.Load() {
			f.late.Add(1)
		}
		f.inFlight.Add(1)
		defer f.inFlight.Add(-1)
		id := idOf(t, p)
		l.Attempt(id)
		time.Sleep(work(id))
		f.mu.Lock()
		f.finished[id] = true
		f.mu.Unlock()
		l.Handled(id)
		return nil
	}
}

// count is the number of messages the handler finished.
func (f *firstBroker) count() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.finished) }

// did reports whether the handler finished id.
func (f *firstBroker) did(id int) bool { f.mu.Lock(); defer f.mu.Unlock(); return f.finished[id] }

// next is the handler of the broker of the group that comes after: it records
// each call in l, counts in again the messages the first broker had finished,
// and returns nil.
func (f *firstBroker) next(t testing.TB, l *Ledger) relay.Handler {
	return func(p []byte) error {
		id := idOf(t, p)
		l.Attempt(id)
		if f.did(id) {
			f.again.Add(1)
		}
		l.Handled(id)
		return nil
	}
}
