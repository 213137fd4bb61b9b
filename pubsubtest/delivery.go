package pubsubtest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/go-relay/relay"
	"github.com/stretchr/testify/assert"
)

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
				assert.NoError(t, checkPayload(p, c.payload))
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
		assert.NoError(t, checkExactlyOnce(in.counts(), want), "group %d", i+1)
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
			assert.NoError(t, checkCompeting([]map[string]int{in1.counts(), in2.counts()}, want))
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
		assert.NoError(t, checkExactlyOnce(in.counts(), want), "group %d", i+1)
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
	assert.NoError(t, checkExactlyOnce(in.counts(), []string{"own"}), "subscription on %q", topic)
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
	assert.NoError(t, checkExactlyOnce(in.counts(), want))
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
	assert.NoError(t, checkOrder(in.payloads(), want))
}
