package pubsubtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/delay"
	"github.com/ThreeDotsLabs/watermill/message"

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

// delayedRows are the Watermill-face rows of delayed delivery and
// retry-after; TestWatermill runs them after its own.
func (s *wmSuite) delayedRows() []row {
	return []row{
		{"a message with _watermill_delayed_until is delivered in due order and none early", s.testDelayedUntil},
		{"a message with _watermill_delayed_until reaches every group once, none before its due time", s.testDelayedUntilGroups},
		{"a malformed _watermill_delayed_until is rejected with ErrInvalidDelay and nothing is stored", s.testDelayedMalformed},
		{"a batch with one malformed _watermill_delayed_until is refused whole and none of it is stored", s.testDelayedMalformedBatch},
		{"Watermill's delay.NewPublisher with a default delay delays every message", s.testDelayPublisher},
		{"a Nack after RetryAfter through NackReason waits at least its wait", s.testNackRetryAfter},
	}
}

func (s *wmSuite) needDelay(t *testing.T) {
	t.Helper()
	if !s.h.Capabilities.Delayed {
		t.Skip("the backend does not declare Capabilities.Delayed")
	}
}

// receiveAll receives n messages from ch, acking each, and returns them
// with their arrival times.
func receiveAll(t *testing.T, ch <-chan *message.Message, n int) *inbox {
	t.Helper()
	in := newInbox()
	for range n {
		m := receiveWM(t, ch, waitShort, "delayed message")
		in.add(m.Payload)
		m.Ack()
	}
	return in
}

func (s *wmSuite) testDelayedUntil(t *testing.T) {
	s.needDelay(t)
	cfg := DefaultConfig()
	cfg.Concurrency = 1
	topic := NewTopic(t)
	ch := subscribeWM(t, s.subscriber(t, cfg), topic)
	now := time.Now()
	due := map[string]time.Time{"2": now.Add(2 * dueStep), "1": now.Add(dueStep)}
	var msgs []*message.Message
	for _, p := range []string{"2", "1"} {
		m := message.NewMessage(watermill.NewUUID(), []byte(p))
		m.Metadata.Set(relay.MetadataDelayedUntil, due[p].Format(time.RFC3339Nano)) // fractions of a second
		msgs = append(msgs, m)
	}
	publishWM(t, s.publisher(t, cfg), topic, msgs...)
	in := receiveAll(t, ch, 2)
	if got := in.payloads(); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("delivered %q, want due order [1 2]", got)
	}
	if err := checkNotEarly(in, due); err != nil {
		t.Error(err)
	}
}

func (s *wmSuite) testDelayedMalformed(t *testing.T) {
	s.needDelay(t)
	cfg := DefaultConfig()
	topic := NewTopic(t)
	pub := s.publisher(t, cfg)
	for _, v := range []string{"tomorrow", "2026-13-01T00:00:00Z", "1700000000"} {
		m := message.NewMessage(watermill.NewUUID(), []byte(v))
		m.Metadata.Set(relay.MetadataDelayedUntil, v)
		if err := pub.Publish(topic, m); !errors.Is(err, relay.ErrInvalidDelay) {
			t.Errorf("Publish with %s %q = %v, want an error wrapping relay.ErrInvalidDelay", relay.MetadataDelayedUntil, v, err)
		}
	}
	ch := subscribeWM(t, s.subscriber(t, cfg), topic)
	publishWM(t, pub, topic, message.NewMessage(watermill.NewUUID(), []byte("marker")))
	m := receiveWM(t, ch, waitShort, "the marker")
	m.Ack()
	if string(m.Payload) != "marker" {
		t.Errorf("first message %q, want the marker: a refused message was stored", m.Payload)
	}
	select {
	case m := <-ch:
		m.Ack()
		t.Errorf("message %q delivered: a refused message was stored", m.Payload)
	case <-time.After(settleWindow(cfg)):
	}
}

// testDelayedUntilGroups is [byteSuite.testDelayedGroups] on the Watermill
// face: two subscribers of two groups.
func (s *wmSuite) testDelayedUntilGroups(t *testing.T) {
	s.needDelay(t)
	cfg := DefaultConfig()
	topic := NewTopic(t)
	var chs []<-chan *message.Message
	for range 2 {
		chs = append(chs, subscribeWM(t, s.subscriber(t, DefaultConfig()), topic)) // a fresh group each
	}
	due := map[string]time.Time{"delayed": time.Now().Add(dueStep)}
	m := message.NewMessage(watermill.NewUUID(), []byte("delayed"))
	m.Metadata.Set(relay.MetadataDelayedUntil, due["delayed"].Format(time.RFC3339Nano))
	publishWM(t, s.publisher(t, cfg), topic, m)
	for i, ch := range chs {
		in := receiveAll(t, ch, 1)
		if err := checkNotEarly(in, due); err != nil {
			t.Errorf("group %d: %v", i+1, err)
		}
	}
	quiet(settleWindow(cfg))
	for i, ch := range chs {
		select {
		case m := <-ch:
			m.Ack()
			t.Errorf("group %d received %q again, want the delayed message once", i+1, m.Payload)
		default:
		}
	}
}

// testDelayedMalformedBatch: a Publish of several messages checks every due
// time before it stores any, so a malformed one last in the batch leaves
// neither the message due now nor the delayed one before it stored. A
// delayed marker due after the batch's delayed message shows when that one
// would have come.
func (s *wmSuite) testDelayedMalformedBatch(t *testing.T) {
	s.needDelay(t)
	cfg := DefaultConfig()
	topic := NewTopic(t)
	ch := subscribeWM(t, s.subscriber(t, cfg), topic)
	pub := s.publisher(t, cfg)
	due := time.Now().Add(dueStep)
	delayed := message.NewMessage(watermill.NewUUID(), []byte("delayed"))
	delayed.Metadata.Set(relay.MetadataDelayedUntil, due.Format(time.RFC3339Nano))
	now := message.NewMessage(watermill.NewUUID(), []byte("now"))
	bad := message.NewMessage(watermill.NewUUID(), []byte("malformed"))
	bad.Metadata.Set(relay.MetadataDelayedUntil, "tomorrow")
	if err := pub.Publish(topic, delayed, now, bad); !errors.Is(err, relay.ErrInvalidDelay) {
		t.Errorf("Publish of a batch whose last message has %s %q = %v, want an error wrapping relay.ErrInvalidDelay",
			relay.MetadataDelayedUntil, "tomorrow", err)
	}
	marker := message.NewMessage(watermill.NewUUID(), []byte("marker"))
	marker.Metadata.Set(relay.MetadataDelayedUntil, due.Add(100*time.Millisecond).Format(time.RFC3339Nano))
	publishWM(t, pub, topic, marker)
	for {
		m := receiveWM(t, ch, waitShort, "the marker")
		m.Ack()
		if string(m.Payload) == "marker" {
			break
		}
		t.Errorf("message %q of the refused batch was delivered", m.Payload)
	}
	select {
	case m := <-ch:
		m.Ack()
		t.Errorf("message %q delivered after the marker: the refused batch was stored", m.Payload)
	case <-time.After(settleWindow(cfg)):
	}
}

func (s *wmSuite) testDelayPublisher(t *testing.T) {
	s.needDelay(t)
	cfg := DefaultConfig()
	topic := NewTopic(t)
	ch := subscribeWM(t, s.subscriber(t, cfg), topic)
	const d = 1500 * time.Millisecond
	pub, err := delay.NewPublisher(s.publisher(t, cfg), delay.PublisherConfig{
		DefaultDelayGenerator: func(delay.DefaultDelayGeneratorParams) (delay.Delay, error) { return delay.For(d), nil },
	})
	if err != nil {
		t.Fatalf("delay.NewPublisher: %v", err)
	}
	start := time.Now()
	due := map[string]time.Time{}
	for _, p := range []string{"a", "b", "c"} {
		m := message.NewMessage(watermill.NewUUID(), []byte(p))
		publishWM(t, pub, topic, m)
		// delay.Message writes whole seconds (time.RFC3339): the due time is
		// what it wrote, up to a second before start+d.
		at, perr := time.Parse(time.RFC3339, m.Metadata.Get(delay.DelayedUntilKey))
		if perr != nil {
			t.Fatalf("delay.NewPublisher wrote %s %q: %v", delay.DelayedUntilKey, m.Metadata.Get(delay.DelayedUntilKey), perr)
		}
		due[p] = at
	}
	in := receiveAll(t, ch, 3)
	if err := checkNotEarly(in, due); err != nil {
		t.Error(err)
	}
	for _, r := range in.receipts() {
		if early := start.Add(d - time.Second).Sub(r.at); early > 0 {
			t.Errorf("%q delivered %v after publish, want at least %v (the %v delay less the second it is truncated to)",
				r.payload, r.at.Sub(start), d-time.Second, d)
		}
	}
}

func (s *wmSuite) testNackRetryAfter(t *testing.T) {
	if !s.h.Capabilities.RetryAfter {
		t.Skip("the backend does not declare Capabilities.RetryAfter")
	}
	cfg := DefaultConfig()
	const wait = 400 * time.Millisecond
	topic := NewTopic(t)
	ch := subscribeWM(t, s.subscriber(t, cfg), topic)
	publishWM(t, s.publisher(t, cfg), topic, message.NewMessage(watermill.NewUUID(), []byte("ra")))
	handler := relay.NackReason(func(*message.Message) ([]*message.Message, error) {
		return nil, relay.RetryAfter(errInduced, wait)
	})
	var ts []time.Time
	for i := range cfg.MaxDeliver {
		m := receiveWM(t, ch, waitShort, "delivery after RetryAfter")
		ts = append(ts, time.Now())
		if i == cfg.MaxDeliver-1 {
			m.Ack()
			break
		}
		if _, err := handler(m); err == nil || !strings.Contains(m.Metadata.Get(relay.MetadataRetryAfter), "ms") {
			t.Fatalf("NackReason recorded %s %q for a RetryAfter of %v", relay.MetadataRetryAfter, m.Metadata.Get(relay.MetadataRetryAfter), wait)
		}
		m.Nack()
	}
	checkSpacing(t, ts, wait)
}
