package faulttest

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-relay/relay/pubsubtest"
)

// Kinds of message in [RunHandlerFailures], by id: 1% poison, 10% transient.
func isPoison(id int) bool    { return id%100 == 7 }
func isTransient(id int) bool { return id%10 == 3 }

// transientFailures is how many deliveries of a transient message fail
// before one succeeds: 1 or 2, always fewer than max deliver (3).
func transientFailures(id int) int { return 1 + (id/10)%2 }

// RunHandlerFailures publishes many messages of which 10% fail transiently
// (their first one or two deliveries return an error, a later one succeeds)
// and 1% always fail (poison). Every transient message must be handled,
// every poison one must reach the dead-letter topic exactly once, no
// confirmed message may be lost; duplicates are counted and reported.
//
// Budget: 2,000 messages (RELAY_FAULTS=full: 20,000), max deliver 3,
// backoff 10..100 ms, 32 handlers; all must be accounted for within 2 minutes
// (full: 8 minutes).
func RunHandlerFailures(t *testing.T, b Backend) {
	n := pick(2000, 20000)
	budget := pick(2*time.Minute, 8*time.Minute)
	topic, group := names(t, b)
	cfg := pubsubtest.Config{Group: group, MaxDeliver: 3, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Concurrency: 32, AckWait: 5 * time.Second}
	addr := addrOf(b)
	l := NewLedger()

	pub := newBroker(t, b, addr, cfg)
	defer closeBroker(t, pub)
	cons := newBroker(t, b, addr, cfg)
	defer closeBroker(t, cons)
	if err := cons.Subscribe(topic, func(p []byte) error {
		id := idOf(t, p)
		attempt := l.Attempt(id)
		switch {
		case isPoison(id):
			return fmt.Errorf("poison message %d, attempt %d", id, attempt)
		case isTransient(id) && attempt <= transientFailures(id):
			return fmt.Errorf("transient failure of %d, attempt %d", id, attempt)
		}
		l.Handled(id)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	consumeDead(t, cons, topic, l)

	start := time.Now()
	publishAll(t, pub, topic, l, 0, n, 16, 30*time.Second)
	ids := l.Confirmed()
	if !waitFor(budget, func() bool { return len(l.Missing(ids)) == 0 }) {
		t.Errorf("after %s, %d of %d messages neither handled nor dead-lettered, e.g. %v",
			budget, len(l.Missing(ids)), n, head(l.Missing(ids)))
	}
	drained := time.Since(start)
	// Late duplicates (a dead letter written twice, a redelivery after an
	// ack) would arrive within the backoff and ack round trips.
	time.Sleep(time.Second)

	var poison, transient int
	for _, id := range ids {
		h, d := l.HandledCount(id), l.DeadCount(id)
		switch {
		case isPoison(id):
			poison++
			if h != 0 || d != 1 {
				t.Errorf("poison message %d: handled %d times, dead-lettered %d times; want 0 and exactly 1", id, h, d)
			}
		default:
			if isTransient(id) {
				transient++
			}
			if h < 1 || d != 0 {
				t.Errorf("message %d (transient %v): handled %d times, dead-lettered %d times; want at least 1 and 0",
					id, isTransient(id), h, d)
			}
		}
	}
	messages, lost, dups := l.Tally()
	if lost != 0 {
		t.Errorf("lost %d messages", lost)
	}
	report(t, "handler-failures", b, messages, lost, dups, -1,
		fmt.Sprintf("transient=%d poison=%d drained=%s", transient, poison, drained.Round(time.Millisecond)))
}

// head returns at most the first 10 ids, for messages.
func head(ids []int) []int { return ids[:min(len(ids), 10)] }
