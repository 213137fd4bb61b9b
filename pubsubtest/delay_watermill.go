package pubsubtest

import (
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

// delayedRows are the Watermill-face rows of delayed delivery and
// retry-after; TestWatermill runs them after its own.
func (s *wmSuite) delayedRows() []row {
	return []row{
		{"a message with _watermill_delayed_until is delivered in due order and none early", s.testDelayedUntil},
		{"a message with _watermill_delayed_until reaches every group once, none before its due time", s.testDelayedUntilGroups},
		{"a malformed _watermill_delayed_until is rejected with ErrInvalidDelay and nothing is stored", s.testDelayedMalformed},
		{"a batch with one malformed _watermill_delayed_until is refused whole and none of it is stored", s.testDelayedMalformedBatch},
		{"a _watermill_delayed_until beyond the maximum is rejected with ErrInvalidDelay and nothing is stored", s.testDelayedUntilTooFar},
		{"10,000 messages with one _watermill_delayed_until are all delivered, none early (time logged)", s.testDelayedUntilBurst},
		{"messages with _watermill_delayed_until published before a restart are delivered after it", s.testDelayedUntilRestart},
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

// delayedMessage returns a message of payload carrying at under
// relay.MetadataDelayedUntil, in fractions of a second.
func delayedMessage(payload string, at time.Time) *message.Message {
	m := message.NewMessage(watermill.NewUUID(), []byte(payload))
	m.Metadata.Set(relay.MetadataDelayedUntil, at.Format(time.RFC3339Nano))
	return m
}

// drainWM acks every message of ch into the inbox it returns, until ch
// closes (the subscriber's Close at the end of t).
func drainWM(ch <-chan *message.Message) *inbox {
	in := newInbox()
	go func() {
		for m := range ch {
			in.add(m.Payload)
			m.Ack()
		}
	}()
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

// testDelayedUntilTooFar is [byteSuite.testDelayedTooFar] on the Watermill
// face: a due time past relay.MaxDelayLimit, beyond any backend's
// WithMaxDelay, and the zero time are refused, and neither is stored.
func (s *wmSuite) testDelayedUntilTooFar(t *testing.T) {
	s.needDelay(t)
	cfg := DefaultConfig()
	topic := NewTopic(t)
	pub := s.publisher(t, cfg)
	for _, c := range []struct {
		name string
		at   time.Time
	}{
		{"beyond MaxDelayLimit", time.Now().Add(relay.MaxDelayLimit + 24*time.Hour)},
		{"the zero time", time.Time{}},
	} {
		m := delayedMessage(c.name, c.at)
		v := m.Metadata.Get(relay.MetadataDelayedUntil)
		if err := pub.Publish(topic, m); !errors.Is(err, relay.ErrInvalidDelay) {
			t.Errorf("Publish with %s %q (%s) = %v, want an error wrapping relay.ErrInvalidDelay",
				relay.MetadataDelayedUntil, v, c.name, err)
		}
	}
	in := drainWM(subscribeWM(t, s.subscriber(t, cfg), topic))
	publishWM(t, pub, topic, message.NewMessage(watermill.NewUUID(), []byte("marker")))
	in.waitDistinct(t, 1, waitShort, "the marker after the refused delays")
	quiet(settleWindow(cfg))
	if got := in.payloads(); !slices.Equal(got, []string{"marker"}) {
		t.Errorf("delivered %q, want only the marker: a refused delayed message was stored", got)
	}
}

// burstBatch is how many messages each Publish of the Watermill burst
// carries.
const burstBatch = 25

// testDelayedUntilBurst is [byteSuite.testDelayedBurst] on the Watermill
// face: 10,000 messages (1,000 with -short) due at one instant, published
// in batches of burstBatch from 16 goroutines before it, are all delivered
// within waitLong of it, none before; how long after the instant the last
// one came is logged.
func (s *wmSuite) testDelayedUntilBurst(t *testing.T) {
	s.needDelay(t)
	cfg := DefaultConfig()
	cfg.Concurrency = 16
	topic := NewTopic(t)
	in := drainWM(subscribeWM(t, s.subscriber(t, cfg), topic))
	pub := s.publisher(t, cfg)
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
			for i := w * burstBatch; i < n; i += 16 * burstBatch {
				var batch []*message.Message
				for _, p := range payloads[i:min(i+burstBatch, n)] {
					batch = append(batch, delayedMessage(p, at))
				}
				if err := pub.Publish(topic, batch...); err != nil {
					errs <- fmt.Errorf("publish of messages %d to %d: %w", i, i+len(batch)-1, err)
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
	if published := time.Now(); published.After(at) {
		t.Logf("publishing took until %v after the due time; the delivery time below includes it", published.Sub(at))
	}
	in.waitDistinct(t, n, waitLong+max(0, time.Until(at)), "delayed burst")
	first, last := in.receipts()[0].at, time.Time{}
	for _, r := range in.receipts() {
		first, last = minTime(first, r.at), maxTime(last, r.at)
	}
	if first.Before(at) {
		t.Errorf("a message due at %v was delivered %v early", at.Format(time.StampMilli), at.Sub(first))
	}
	t.Logf("%d messages due at one instant: first delivered %v after it, last %v after it", n, first.Sub(at), last.Sub(at))
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// testDelayedUntilRestart is [byteSuite.testDelayedRestart] on the
// Watermill face: messages published with due times 1.5 s ahead, then a
// restart of the server, then a subscriber of a new group: every message
// comes, none early.
func (s *wmSuite) testDelayedUntilRestart(t *testing.T) {
	switch {
	case s.h.Restart == nil:
		t.Skip("Harness.Restart is nil: cannot restart the backend")
	case !s.h.Capabilities.Persistent:
		t.Skip("the backend does not declare Capabilities.Persistent")
	}
	s.needDelay(t)
	cfg := DefaultConfig()
	topic := NewTopic(t)
	due := map[string]time.Time{}
	var msgs []*message.Message
	start := time.Now()
	for i, p := range messages("restart", 5) {
		due[p] = start.Add(1500*time.Millisecond + time.Duration(i)*100*time.Millisecond)
		msgs = append(msgs, delayedMessage(p, due[p]))
	}
	publishWM(t, s.publisher(t, cfg), topic, msgs...)
	s.h.Restart(t)
	sub := s.subscriber(t, cfg)
	var (
		ch  <-chan *message.Message
		err error
	)
	// Subscribe may fail while the backend reconnects; it must succeed soon.
	if !poll(waitLong, func() bool { ch, err = sub.Subscribe(t.Context(), topic); return err == nil }) {
		t.Fatalf("Subscribe after restart kept failing for %v: %v", waitLong, err)
	}
	in := drainWM(ch)
	in.waitDistinct(t, len(due), waitLong, "delayed messages after a restart")
	if err := checkNotEarly(in, due); err != nil {
		t.Error(err)
	}
}
