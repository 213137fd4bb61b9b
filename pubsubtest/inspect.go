package pubsubtest

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
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

// TestInspector runs the conformance rows of [relay.Inspector] against the
// inspector h.NewInspector makes, over the topic space of the brokers
// h.NewBroker makes (and, for the rows about metadata, the publishers and
// subscribers of h.NewPublisher and h.NewSubscriber when set). It arranges a
// state with the brokers (messages published, consumed, held pending, left
// unread, dead-lettered) and checks that the inspector reports exactly that,
// and that redrive and purge move what they say. A harness without
// NewInspector fails the test: call TestInspector only for a backend that
// has one.
func TestInspector(t *testing.T, h Harness) {
	if h.NewInspector == nil || h.NewBroker == nil {
		t.Fatal("pubsubtest: TestInspector needs Harness.NewInspector and Harness.NewBroker")
	}
	s := &inspectSuite{byteSuite{h: h}}
	for _, c := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"an unknown topic is reported as ErrUnknownTopic", s.testUnknownTopic},
		{"Topic counts stored, pending and lagging messages per group", s.testCounts},
		{"dead letters are listed with their source, attempts and reason, filtered and ordered", s.testDeadLetters},
		{"redrive publishes a dead letter again as a new message and then removes it", s.testRedrive},
		{"redrive of a dead letter already redriven or purged fails with ErrDeadLetterGone and publishes nothing", s.testRedriveGone},
		{"purge removes dead letters, and one already gone is no error", s.testPurge},
		{"DeleteConsumer refuses a consumer with pending messages", s.testDeleteConsumer},
	} {
		t.Run(c.name, c.run)
	}
}

type inspectSuite struct{ byteSuite }

func (s *inspectSuite) inspector(t *testing.T) relay.Inspector {
	t.Helper()
	in := s.h.NewInspector(t)
	require.NotNil(t, in, "NewInspector returned nil")
	return in
}

func inspectCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), waitShort)
	t.Cleanup(cancel)
	return ctx
}

// group returns the group of info called name, failing t when it has none.
func group(t *testing.T, info relay.TopicInfo, name string) relay.GroupInfo {
	t.Helper()
	for _, g := range info.Groups {
		if g.Group == name {
			return g
		}
	}
	var names []string
	for _, g := range info.Groups {
		names = append(names, g.Group)
	}
	t.Fatalf("topic %s has no group %q; groups: %v", info.Topic, name, names)
	return relay.GroupInfo{}
}

// deadLetters collects what in.DeadLetters yields, failing t on an error.
func deadLetters(t *testing.T, in relay.Inspector, topic string, f relay.DeadLetterFilter) []relay.DeadLetter {
	t.Helper()
	var dls []relay.DeadLetter
	for dl, err := range in.DeadLetters(inspectCtx(t), topic, f) {
		require.NoError(t, err, "DeadLetters(%q)", topic)
		dls = append(dls, dl)
	}
	return dls
}

// waitDeadLetters waits until topic's dead-letter topic holds n messages,
// as the inspector counts them.
func waitDeadLetters(t *testing.T, in relay.Inspector, topic string, n int) {
	t.Helper()
	var last []relay.DeadLetter
	ok := poll(waitShort, func() bool {
		last = last[:0]
		for dl, err := range in.DeadLetters(inspectCtx(t), topic+".dead", relay.DeadLetterFilter{}) {
			if err != nil {
				return false // the dead-letter topic may not exist yet
			}
			last = append(last, dl)
		}
		return len(last) == n
	})
	require.True(t, ok, "dead letters of %s: %d, want %d", topic, len(last), n)
}

func (s *inspectSuite) testUnknownTopic(t *testing.T) {
	in := s.inspector(t)
	topic := NewTopic(t)
	_, err := in.Topic(inspectCtx(t), topic)
	require.ErrorIs(t, err, relay.ErrUnknownTopic, "Topic of a topic never published to")
	var yielded int
	for _, err := range in.DeadLetters(inspectCtx(t), topic+".dead", relay.DeadLetterFilter{}) {
		yielded++
		require.ErrorIs(t, err, relay.ErrUnknownTopic, "DeadLetters of a topic never published to")
	}
	assert.Equal(t, 1, yielded, "DeadLetters of an unknown topic yields its error once")
	topics, err := in.Topics(inspectCtx(t))
	require.NoError(t, err)
	assert.NotContains(t, topics, topic)
}

// testCounts: group held holds its first message pending in a handler that
// does not return; group done consumes everything and is closed; then two
// more messages are published, which both groups lag behind by.
func (s *inspectSuite) testCounts(t *testing.T) {
	in := s.inspector(t)
	topic := NewTopic(t)
	start := time.Now()
	pub := s.broker(t, DefaultConfig())
	for i := range 3 {
		publish(t, pub, topic, fmt.Appendf(nil, "m%d", i))
	}

	heldCfg := DefaultConfig()
	heldCfg.Concurrency = 1
	release := make(chan struct{})
	heldBroker := s.broker(t, heldCfg)
	t.Cleanup(sync.OnceFunc(func() { close(release) })) // runs before the broker's Close
	var held atomic.Int32
	subscribe(t, heldBroker, topic, func([]byte) error {
		held.Add(1)
		<-release
		return nil
	})
	eventually(t, waitShort, func() bool { return held.Load() == 1 }, "the held group's handler was not called")

	doneCfg := DefaultConfig()
	done := newInbox()
	doneBroker := s.broker(t, doneCfg)
	subscribe(t, doneBroker, topic, done.handler(nil))
	done.waitDistinct(t, 3, waitShort, "group "+doneCfg.Group)
	// The acks are sent after the handlers return: wait until the server has them.
	eventually(t, waitShort, func() bool {
		info, err := in.Topic(inspectCtx(t), topic)
		return err == nil && group(t, info, doneCfg.Group).Pending == 0
	}, "group %s still has pending messages after its handlers returned", doneCfg.Group)
	require.NoError(t, doneBroker.Close())

	publish(t, pub, topic, []byte("m3"))
	publish(t, pub, topic, []byte("m4"))
	time.Sleep(20 * time.Millisecond) // an age of the oldest pending message that shows

	info, err := in.Topic(inspectCtx(t), topic)
	require.NoError(t, err)
	assert.Equal(t, topic, info.Topic)
	assert.NotEmpty(t, info.Store, "Store names what holds the topic")
	assert.EqualValues(t, 5, info.Messages, "messages stored: no group acknowledged m0")
	assert.NotEmpty(t, info.FirstID)
	assert.NotEmpty(t, info.LastID)
	assert.NotEqual(t, info.FirstID, info.LastID)
	assert.False(t, info.FirstTime.IsZero() || info.LastTime.IsZero(), "first and last times are set")
	assert.False(t, info.LastTime.Before(info.FirstTime), "last time %v before first %v", info.LastTime, info.FirstTime)
	// Servers keep time to the millisecond (Redis ids) and clocks differ by a little.
	assert.WithinRange(t, info.FirstTime, start.Add(-time.Second), time.Now().Add(time.Second))
	assert.EqualValues(t, 0, info.DeadLetters)

	g := group(t, info, heldCfg.Group)
	assert.GreaterOrEqual(t, g.Pending, uint64(1), "held group: the message in the blocked handler is pending")
	if assert.True(t, g.LagKnown, "held group: lag known") {
		assert.EqualValues(t, 5, g.Pending+g.Lag, "held group: pending %d + lag %d, want every message", g.Pending, g.Lag)
	}
	assert.GreaterOrEqual(t, g.OldestPending, 10*time.Millisecond, "held group: age of the oldest pending message")
	assert.EqualValues(t, 0, g.Redeliveries)

	d := group(t, info, doneCfg.Group)
	assert.EqualValues(t, 0, d.Pending, "done group: pending")
	if assert.True(t, d.LagKnown, "done group: lag known") {
		assert.EqualValues(t, 2, d.Lag, "done group: lag, the two messages published after it closed")
	}
	assert.Zero(t, d.OldestPending)

	topics, err := in.Topics(inspectCtx(t))
	require.NoError(t, err)
	assert.Contains(t, topics, topic)
	assert.True(t, slices.IsSorted(topics), "Topics are sorted: %v", topics)
}

// poison publishes n failing messages on a new topic, each dead-lettered by
// a group that fails them: "perm-i" with a permanent error after one
// delivery, and with withRetry "retry" after MaxDeliver (2) deliveries. It
// returns the topic and the broker of the failing group.
func (s *inspectSuite) poison(t *testing.T, n int, withRetry bool) (string, relay.Broker) {
	t.Helper()
	topic := NewTopic(t)
	cfg := DefaultConfig()
	cfg.Concurrency = 1
	cfg.MaxDeliver = 2
	b := s.broker(t, cfg)
	subscribe(t, b, topic, func(p []byte) error {
		if strings.HasPrefix(string(p), "perm-") {
			return fmt.Errorf("bad %s: %w", p, relay.ErrPermanent)
		}
		return fmt.Errorf("flaky %s", p)
	})
	for i := range n {
		publish(t, b, topic, fmt.Appendf(nil, "perm-%d", i))
	}
	if withRetry {
		publish(t, b, topic, []byte("retry"))
	}
	return topic, b
}

func (s *inspectSuite) testDeadLetters(t *testing.T) {
	in := s.inspector(t)
	topic, b := s.poison(t, 3, true)
	waitDeadLetters(t, in, topic, 4)
	// A dead letter relay did not write: published on the dead-letter topic as
	// any message is.
	publish(t, b, topic+".dead", []byte("foreign"))
	waitDeadLetters(t, in, topic, 5)

	all := deadLetters(t, in, topic+".dead", relay.DeadLetterFilter{})
	ids := map[string]bool{}
	for i, dl := range all {
		assert.Equal(t, topic+".dead", dl.Topic)
		assert.NotEmpty(t, dl.ID)
		assert.False(t, ids[dl.ID], "id %s yielded twice", dl.ID)
		ids[dl.ID] = true
		assert.False(t, dl.Time.IsZero(), "dead letter %s has a time", dl.ID)
		if i > 0 {
			assert.False(t, dl.Time.Before(all[i-1].Time), "oldest first: %s at %v after %v", dl.ID, dl.Time, all[i-1].Time)
		}
		switch p := string(dl.Payload); {
		case p == "foreign":
			assert.Empty(t, dl.Reason, "foreign dead letter has no reason")
			assert.Empty(t, dl.SourceTopic)
			assert.Zero(t, dl.Attempts)
		case p == "retry":
			assert.Equal(t, topic, dl.SourceTopic)
			assert.NotEmpty(t, dl.SourceID)
			assert.Equal(t, 2, dl.Attempts, "retried message: attempts = max deliver")
			assert.Contains(t, dl.Reason, "flaky retry")
			assert.Equal(t, dl.Reason, dl.Metadata[relay.MetadataReason])
		case strings.HasPrefix(p, "perm-"):
			assert.Equal(t, topic, dl.SourceTopic)
			assert.NotEmpty(t, dl.SourceID)
			assert.Equal(t, 1, dl.Attempts, "permanent error: one attempt")
			assert.Contains(t, dl.Reason, "bad "+p)
			assert.NotEmpty(t, dl.UUID)
		default:
			t.Errorf("unexpected dead letter %q", p)
		}
	}
	require.Len(t, all, 5)

	newest := deadLetters(t, in, topic+".dead", relay.DeadLetterFilter{Newest: true})
	var rev []string
	for _, dl := range newest {
		rev = append(rev, dl.ID)
	}
	var fwd []string
	for _, dl := range all {
		fwd = append(fwd, dl.ID)
	}
	slices.Reverse(rev)
	assert.Equal(t, fwd, rev, "Newest yields the same dead letters in reverse order")

	for _, c := range []struct {
		name string
		f    relay.DeadLetterFilter
		want int
	}{
		{"reason", relay.DeadLetterFilter{Reason: regexp.MustCompile(`^bad perm-[01]\b`)}, 2},
		{"source topic", relay.DeadLetterFilter{SourceTopic: topic}, 4},
		{"older than an hour", relay.DeadLetterFilter{OlderThan: time.Hour}, 0},
		{"ids", relay.DeadLetterFilter{IDs: []string{all[1].ID, all[3].ID}}, 2},
		{"limit", relay.DeadLetterFilter{Limit: 2}, 2},
		{"limit newest", relay.DeadLetterFilter{Limit: 1, Newest: true}, 1},
	} {
		got := deadLetters(t, in, topic+".dead", c.f)
		assert.Len(t, got, c.want, "filter %s", c.name)
		if c.name == "limit" && len(got) == 2 {
			assert.Equal(t, fwd[:2], []string{got[0].ID, got[1].ID}, "limit keeps the oldest")
		}
		if c.name == "limit newest" && len(got) == 1 {
			assert.Equal(t, fwd[4], got[0].ID, "limit newest keeps the newest")
		}
	}

	info, err := in.Topic(inspectCtx(t), topic)
	require.NoError(t, err)
	assert.EqualValues(t, 5, info.DeadLetters, "Topic counts the dead-letter topic's messages")
	topics, err := in.Topics(inspectCtx(t))
	require.NoError(t, err)
	assert.Contains(t, topics, topic+".dead")
}

func (s *inspectSuite) testRedrive(t *testing.T) {
	in := s.inspector(t)
	topic := NewTopic(t)
	cfg := DefaultConfig()
	var heal atomic.Bool
	got := newInbox()
	b := s.broker(t, cfg)
	subscribe(t, b, topic, got.handler(func([]byte) error {
		if heal.Load() {
			return nil
		}
		return relay.ErrPermanent
	}))
	// With the Watermill face, the dead letter carries user metadata and a
	// UUID that the redriven message must keep and replace.
	var wantMD map[string]string
	if s.h.NewPublisher != nil {
		wantMD = map[string]string{"tenant": "acme"}
		p, err := s.h.NewPublisher(t, DefaultConfig())
		require.NoError(t, err)
		t.Cleanup(func() { _ = testkit.CloseWithin(t, waitLong, p.Close, "publisher Close at cleanup") })
		m := message.NewMessage(watermill.NewUUID(), []byte("fix me"))
		m.Metadata.Set("tenant", "acme")
		require.NoError(t, p.Publish(topic, m))
	} else {
		publish(t, b, topic, []byte("fix me"))
	}
	waitDeadLetters(t, in, topic, 1)
	dl := deadLetters(t, in, topic+".dead", relay.DeadLetterFilter{})[0]

	err := in.Redrive(inspectCtx(t), dl, "not a topic*")
	require.ErrorIs(t, err, relay.ErrInvalidTopic, "redrive to an invalid topic")
	require.Len(t, deadLetters(t, in, topic+".dead", relay.DeadLetterFilter{}), 1, "an invalid redrive moves nothing")

	// A Watermill subscriber of a new group on the source topic sees the
	// original and the redriven message; the redriven one names the dead
	// letter it came from.
	var wmIn <-chan *message.Message
	if s.h.NewSubscriber != nil {
		sub, err := s.h.NewSubscriber(t, DefaultConfig())
		require.NoError(t, err)
		t.Cleanup(func() { _ = testkit.CloseWithin(t, waitLong, sub.Close, "subscriber Close at cleanup") })
		wmIn, err = sub.Subscribe(t.Context(), topic)
		require.NoError(t, err)
	}

	heal.Store(true)
	require.NoError(t, in.Redrive(inspectCtx(t), dl, ""))
	eventually(t, waitShort, func() bool { return got.counts()["fix me"] == 2 }, "redriven message not delivered to the source topic's group")
	assert.Empty(t, deadLetters(t, in, topic+".dead", relay.DeadLetterFilter{}), "a redriven dead letter is removed")

	if wmIn != nil {
		want := dl.Topic + "/" + dl.ID
		timeout := time.After(waitShort)
	loop:
		for {
			select {
			case m := <-wmIn:
				m.Ack()
				if m.Metadata.Get(relay.MetadataRedrivenFrom) != want {
					continue
				}
				assert.NotEqual(t, dl.UUID, m.UUID, "a redriven message has a new UUID")
				assert.Equal(t, "fix me", string(m.Payload))
				for k, v := range wantMD {
					assert.Equal(t, v, m.Metadata.Get(k), "user metadata %q kept", k)
				}
				assert.Empty(t, m.Metadata.Get(relay.MetadataReason), "relay's dead-letter keys are dropped")
				break loop
			case <-timeout:
				t.Fatalf("no message with %s=%s on %s", relay.MetadataRedrivenFrom, want, topic)
			}
		}
	}

	// Redrive to another topic.
	other := NewTopic(t)
	heal.Store(false)
	publish(t, b, topic, []byte("elsewhere"))
	waitDeadLetters(t, in, topic, 1)
	otherIn := newInbox()
	subscribe(t, s.broker(t, DefaultConfig()), other, otherIn.handler(nil))
	dl = deadLetters(t, in, topic+".dead", relay.DeadLetterFilter{})[0]
	require.NoError(t, in.Redrive(inspectCtx(t), dl, other))
	otherIn.waitDistinct(t, 1, waitShort, "redrive --to "+other)
	assert.Equal(t, []string{"elsewhere"}, otherIn.payloads())
}

func (s *inspectSuite) testRedriveGone(t *testing.T) {
	in := s.inspector(t)
	topic, _ := s.poison(t, 2, false)
	waitDeadLetters(t, in, topic, 2)
	all := deadLetters(t, in, topic+".dead", relay.DeadLetterFilter{})
	require.Len(t, all, 2)
	// To a topic nobody consumes, so that what it holds counts the publishes.
	other := NewTopic(t)
	require.NoError(t, in.Redrive(inspectCtx(t), all[0], other))
	stored := func() uint64 {
		info, err := in.Topic(inspectCtx(t), other)
		require.NoError(t, err)
		return info.Messages
	}
	require.EqualValues(t, 1, stored(), "the first redrive publishes once")

	// The same DeadLetter value again: a stale listing, or a second operator.
	err := in.Redrive(inspectCtx(t), all[0], other)
	require.ErrorIs(t, err, relay.ErrDeadLetterGone, "redrive of a dead letter already redriven")
	require.NoError(t, in.Purge(inspectCtx(t), all[1]))
	err = in.Redrive(inspectCtx(t), all[1], other)
	require.ErrorIs(t, err, relay.ErrDeadLetterGone, "redrive of a dead letter purged")
	assert.EqualValues(t, 1, stored(), "a refused redrive publishes nothing")
	assert.Empty(t, deadLetters(t, in, topic+".dead", relay.DeadLetterFilter{}))
}

func (s *inspectSuite) testPurge(t *testing.T) {
	in := s.inspector(t)
	topic, _ := s.poison(t, 2, false)
	waitDeadLetters(t, in, topic, 2)
	all := deadLetters(t, in, topic+".dead", relay.DeadLetterFilter{})
	require.NoError(t, in.Purge(inspectCtx(t), all[0]))
	left := deadLetters(t, in, topic+".dead", relay.DeadLetterFilter{})
	require.Len(t, left, 1)
	assert.Equal(t, all[1].ID, left[0].ID)
	assert.NoError(t, in.Purge(inspectCtx(t), all[0]), "purging a dead letter already gone")
	require.NoError(t, in.Purge(inspectCtx(t), all[1]))
	assert.Empty(t, deadLetters(t, in, topic+".dead", relay.DeadLetterFilter{}))
}

func (s *inspectSuite) testDeleteConsumer(t *testing.T) {
	in := s.inspector(t)
	topic := NewTopic(t)
	cfg := DefaultConfig()
	cfg.Concurrency = 1
	b := s.broker(t, cfg)
	release := make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // runs before the broker's Close
	var calls atomic.Int32
	subscribe(t, b, topic, func([]byte) error {
		calls.Add(1)
		<-release
		return nil
	})
	publish(t, b, topic, []byte("held"))
	eventually(t, waitShort, func() bool { return calls.Load() == 1 }, "handler not called")

	var consumer string
	eventually(t, waitShort, func() bool {
		info, err := in.Topic(inspectCtx(t), topic)
		if err != nil {
			return false
		}
		for _, c := range group(t, info, cfg.Group).Consumers {
			if c.Pending > 0 {
				consumer = c.Name
				return true
			}
		}
		return false
	}, "no consumer of group %s with a pending message", cfg.Group)
	err := in.DeleteConsumer(inspectCtx(t), topic, cfg.Group, consumer)
	require.ErrorIs(t, err, relay.ErrConsumerPending, "DeleteConsumer of a consumer holding a message")
	err = in.DeleteConsumer(inspectCtx(t), topic, cfg.Group, "no-such-consumer")
	require.ErrorIs(t, err, relay.ErrUnknownConsumer)
	err = in.DeleteConsumer(inspectCtx(t), topic, "no_such_group", consumer)
	require.ErrorIs(t, err, relay.ErrUnknownConsumer)

	unblock()
	require.NoError(t, b.Close())
	// A consumer the server still lists once its broker is closed, with
	// nothing pending, can be deleted, and is then gone.
	info, err := in.Topic(inspectCtx(t), topic)
	require.NoError(t, err)
	for _, g := range info.Groups {
		if g.Group != cfg.Group {
			continue
		}
		for _, c := range g.Consumers {
			if c.Name != consumer {
				continue
			}
			require.Zero(t, c.Pending, "consumer %s after its broker closed", c.Name)
			require.NoError(t, in.DeleteConsumer(inspectCtx(t), topic, cfg.Group, c.Name))
			info, err := in.Topic(inspectCtx(t), topic)
			require.NoError(t, err)
			for _, g := range info.Groups {
				for _, c := range g.Consumers {
					if g.Group == cfg.Group && c.Name == consumer {
						t.Errorf("consumer %s still listed after DeleteConsumer", consumer)
					}
				}
			}
		}
	}
}
