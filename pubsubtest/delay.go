package pubsubtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-relay/relay"
)

// delayedRows are the byte-face rows of delayed delivery and retry-after;
// TestBroker runs them after its own.
func (s *byteSuite) delayedRows() []row {
	return []row{
		{"delayed messages are delivered in due order and none early", s.testDelayedOrder},
		{"a delayed message reaches every group once, none before its due time", s.testDelayedGroups},
		{"a due time in the past is delivered at once", s.testDelayedPast},
		{"a due time beyond the maximum is rejected with ErrInvalidDelay and nothing is stored", s.testDelayedTooFar},
		{"delayed messages are delivered late by little (lateness logged)", s.testDelayedLateness},
		{"10,000 delayed messages due at one instant are all delivered, none early (time logged)", s.testDelayedBurst},
		{"delayed messages published before a restart are delivered after it", s.testDelayedRestart},
		{"RetryAfter spaces redeliveries by at least its wait", s.testRetryAfter},
	}
}

// row is one named sub-test.
type row struct {
	name string
	run  func(t *testing.T)
}

// delayed returns a new broker as [byteSuite.broker] does, and its PublishAt;
// it skips t when the backend does not declare Capabilities.Delayed, and
// fails it when the backend declares it but the broker does not implement
// relay.DelayedPublisher (a wrapper that hides the capability of the broker
// it wraps, say).
func (s *byteSuite) delayed(t *testing.T, cfg Config) (relay.Broker, relay.DelayedPublisher) {
	t.Helper()
	if !s.h.Capabilities.Delayed {
		t.Skip("the backend does not declare Capabilities.Delayed (it cannot delay on this server)")
	}
	b := s.broker(t, cfg)
	dp, ok := b.(relay.DelayedPublisher)
	if !ok {
		t.Fatalf("the harness declares Capabilities.Delayed, but the broker (%T) does not implement relay.DelayedPublisher", b)
	}
	return b, dp
}

func publishAt(t testing.TB, dp relay.DelayedPublisher, topic, payload string, at time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitShort)
	defer cancel()
	if err := dp.PublishAt(ctx, topic, []byte(payload), at); err != nil {
		t.Fatalf("PublishAt(%q, %q, %s): %v", topic, payload, at.Format(time.RFC3339Nano), err)
	}
}

// checkNotEarly returns an error for the first payload of in received before
// its due time.
func checkNotEarly(in *inbox, due map[string]time.Time) error {
	for _, r := range in.receipts() {
		if at, ok := due[string(r.payload)]; ok && r.at.Before(at) {
			return fmt.Errorf("%q delivered %v before its due time", r.payload, at.Sub(r.at))
		}
	}
	return nil
}

// dueStep is how far apart the order rows set their due times: a second, as
// in the example of issue 14 (3 s, 1 s, 2 s). Due order is asked of messages
// due that far apart; a backend may deliver messages due closer together in
// either order (nats-server v2.15.2 fires every schedule that is due when its
// timer runs, at least 250 ms apart, in the order of its timing wheel).
const dueStep = time.Second

func (s *byteSuite) testDelayedOrder(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Concurrency = 1
	b, dp := s.delayed(t, cfg)
	topic := NewTopic(t)
	in := newInbox()
	subscribe(t, b, topic, in.handler(nil))
	now := time.Now()
	due := map[string]time.Time{"3": now.Add(3 * dueStep), "1": now.Add(dueStep), "2": now.Add(2 * dueStep)}
	for _, p := range []string{"3", "1", "2"} {
		publishAt(t, dp, topic, p, due[p])
	}
	in.waitDistinct(t, 3, waitShort, "delayed messages")
	if got := in.payloads(); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Errorf("delivered %q, want due order [1 2 3]", got)
	}
	if err := checkNotEarly(in, due); err != nil {
		t.Error(err)
	}
}

// testDelayedGroups: the due time holds for every group, not only the
// first to ask, and no group gets the message twice. The due time is dueStep
// ahead, well past the 250 ms of a NATS scheduler run.
func (s *byteSuite) testDelayedGroups(t *testing.T) {
	cfg := DefaultConfig()
	b, dp := s.delayed(t, cfg)
	topic := NewTopic(t)
	groups := []*inbox{newInbox(), newInbox()}
	subscribe(t, b, topic, groups[0].handler(nil))
	subscribe(t, s.broker(t, DefaultConfig()), topic, groups[1].handler(nil)) // a second group
	due := map[string]time.Time{"delayed": time.Now().Add(dueStep)}
	publishAt(t, dp, topic, "delayed", due["delayed"])
	for i, in := range groups {
		in.waitDistinct(t, 1, waitShort, fmt.Sprintf("group %d", i+1))
	}
	quiet(settleWindow(cfg))
	for i, in := range groups {
		if err := checkNotEarly(in, due); err != nil {
			t.Errorf("group %d: %v", i+1, err)
		}
		if got := in.payloads(); !slices.Equal(got, []string{"delayed"}) {
			t.Errorf("group %d received %q, want the delayed message once", i+1, got)
		}
	}
}

func (s *byteSuite) testDelayedPast(t *testing.T) {
	b, dp := s.delayed(t, DefaultConfig())
	topic := NewTopic(t)
	in := newInbox()
	subscribe(t, b, topic, in.handler(nil))
	start := time.Now()
	publishAt(t, dp, topic, "past", start.Add(-time.Hour))
	in.waitDistinct(t, 1, waitShort, "a message due an hour ago")
	t.Logf("due an hour ago: delivered %v after PublishAt", time.Since(start).Round(time.Millisecond))
}

func (s *byteSuite) testDelayedTooFar(t *testing.T) {
	cfg := DefaultConfig()
	b, dp := s.delayed(t, cfg)
	topic := NewTopic(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitShort)
	defer cancel()
	for _, c := range []struct {
		name string
		at   time.Time
	}{
		{"beyond MaxDelayLimit", time.Now().Add(relay.MaxDelayLimit + 24*time.Hour)},
		{"the zero time", time.Time{}},
	} {
		err := dp.PublishAt(ctx, topic, []byte(c.name), c.at)
		if !errors.Is(err, relay.ErrInvalidDelay) {
			t.Errorf("PublishAt(%s) = %v, want an error wrapping relay.ErrInvalidDelay", c.name, err)
		}
	}
	in := newInbox()
	subscribe(t, b, topic, in.handler(nil))
	publish(t, b, topic, []byte("marker"))
	in.waitDistinct(t, 1, waitShort, "the marker after the refused delays")
	quiet(settleWindow(cfg))
	if got := in.payloads(); !slices.Equal(got, []string{"marker"}) {
		t.Errorf("delivered %q, want only the marker: a refused delayed message was stored", got)
	}
}

// lateness returns the p50, p99 and max of the delays between each
// payload's due time and its first delivery.
func lateness(in *inbox, due map[string]time.Time) (p50, p99, worst time.Duration) {
	first := map[string]time.Time{}
	for _, r := range in.receipts() {
		if _, ok := first[string(r.payload)]; !ok {
			first[string(r.payload)] = r.at
		}
	}
	var ls []time.Duration
	for p, at := range first {
		ls = append(ls, at.Sub(due[p]))
	}
	if len(ls) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ls)
	q := func(f float64) time.Duration { return ls[min(len(ls)-1, int(f*float64(len(ls))))] }
	return q(0.50), q(0.99), ls[len(ls)-1]
}

func (s *byteSuite) testDelayedLateness(t *testing.T) {
	b, dp := s.delayed(t, DefaultConfig())
	topic := NewTopic(t)
	in := newInbox()
	subscribe(t, b, topic, in.handler(nil))
	n := 200
	if testing.Short() {
		n = 50
	}
	due := make(map[string]time.Time, n)
	start := time.Now()
	for i, p := range messages("late", n) {
		// Due times 150ms to 1.15s ahead, one every 5ms: each is its own
		// wake-up, the case a polling mover serves worst.
		due[p] = start.Add(150*time.Millisecond + time.Duration(i)*time.Millisecond*1000/time.Duration(n))
		publishAt(t, dp, topic, p, due[p])
	}
	in.waitDistinct(t, n, waitLong, "delayed messages")
	if err := checkNotEarly(in, due); err != nil {
		t.Error(err)
	}
	p50, p99, worst := lateness(in, due)
	t.Logf("lateness of %d delayed messages: p50 %v, p99 %v, max %v", n, p50, p99, worst)
}

// testDelayedBurst: 10,000 messages (1,000 with -short) due at the same
// instant, published from 16 goroutines before it, are all delivered within
// waitLong of it, none before; how long after the instant the last one came
// is logged.
func (s *byteSuite) testDelayedBurst(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Concurrency = 16
	b, dp := s.delayed(t, cfg)
	topic := NewTopic(t)
	in := newInbox()
	subscribe(t, b, topic, in.handler(nil))
	n := 10000
	if testing.Short() {
		n = 1000
	}
	payloads := messages("burst", n)
	at := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				ctx, cancel := context.WithTimeout(context.Background(), waitShort)
				err := dp.PublishAt(ctx, topic, []byte(payloads[i]), at)
				cancel()
				if err != nil {
					errs <- fmt.Errorf("PublishAt %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	published := time.Now()
	if published.After(at) {
		t.Logf("publishing took until %v after the due time; the delivery time below includes it", published.Sub(at))
	}
	in.waitDistinct(t, n, waitLong+max(0, time.Until(at)), "delayed burst")
	var first, last time.Time
	for i, r := range in.receipts() {
		if i == 0 || r.at.Before(first) {
			first = r.at
		}
		if r.at.After(last) {
			last = r.at
		}
	}
	if first.Before(at) {
		t.Errorf("a message due at %v was delivered %v early", at.Format(time.StampMilli), at.Sub(first))
	}
	t.Logf("%d messages due at one instant: first delivered %v after it, last %v after it", n, first.Sub(at), last.Sub(at))
}

func (s *byteSuite) testDelayedRestart(t *testing.T) {
	switch {
	case s.h.Restart == nil:
		t.Skip("Harness.Restart is nil: cannot restart the backend")
	case !s.h.Capabilities.Persistent:
		t.Skip("the backend does not declare Capabilities.Persistent")
	}
	cfg := DefaultConfig()
	_, dp := s.delayed(t, cfg)
	topic := NewTopic(t)
	due := map[string]time.Time{}
	start := time.Now()
	for i, p := range messages("restart", 5) {
		due[p] = start.Add(1500*time.Millisecond + time.Duration(i)*100*time.Millisecond)
		publishAt(t, dp, topic, p, due[p])
	}
	s.h.Restart(t)
	in := newInbox()
	b := s.broker(t, cfg)
	var err error
	// Subscribe may fail while the backend reconnects; it must succeed soon.
	if !poll(waitLong, func() bool { err = b.Subscribe(topic, in.handler(nil)); return err == nil }) {
		t.Fatalf("Subscribe after restart kept failing for %v: %v", waitLong, err)
	}
	in.waitDistinct(t, len(due), waitLong, "delayed messages after a restart")
	if err := checkNotEarly(in, due); err != nil {
		t.Error(err)
	}
}

func (s *byteSuite) testRetryAfter(t *testing.T) {
	if !s.h.Capabilities.RetryAfter {
		t.Skip("the backend does not declare Capabilities.RetryAfter")
	}
	cfg := DefaultConfig() // backoff 20ms to 100ms: the wait below is longer
	const wait = 400 * time.Millisecond
	b := s.broker(t, cfg)
	topic := NewTopic(t)
	in := newInbox()
	subscribe(t, b, topic, in.handler(func([]byte) error {
		if len(in.times("ra")) < cfg.MaxDeliver {
			return relay.RetryAfter(errInduced, wait)
		}
		return nil
	}))
	publish(t, b, topic, []byte("ra"))
	eventually(t, waitShort, func() bool { return len(in.times("ra")) >= cfg.MaxDeliver },
		"%d of %d deliveries", len(in.times("ra")), cfg.MaxDeliver)
	checkSpacing(t, in.times("ra"), wait)
}

// checkSpacing fails t when two successive times are less than d apart.
func checkSpacing(t *testing.T, ts []time.Time, d time.Duration) {
	t.Helper()
	for i := 1; i < len(ts); i++ {
		if gap := ts[i].Sub(ts[i-1]); gap < d {
			t.Errorf("redelivery %d came %v after the previous one, want at least %v (RetryAfter)", i+1, gap, d)
		}
	}
}
