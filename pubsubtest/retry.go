package pubsubtest

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/go-relay/relay"
	"github.com/stretchr/testify/assert"
)

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
			assert.NoError(t, checkDeliveries(in.len(), cfg.MaxDeliver))
			assert.NoError(t, checkBackoff(in.times("r"), backoffFloor(cfg)))
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
	assert.NoError(t, checkDeliveries(in.len(), cfg.MaxDeliver), "source topic")
	assert.NoError(t, checkBackoff(in.times(string(payload)), backoffFloor(cfg)), "source topic")
	for _, r := range dead.receipts() {
		assert.NoError(t, checkPayload(r.payload, payload), "dead letter")
	}
	assert.NoError(t, checkDeliveries(dead.len(), 1), "dead-letter topic")
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
			assert.NoError(t, checkDeliveries(in.len(), 1), "source topic")
			assert.NoError(t, checkExactlyOnce(dead.counts(), []string{"p"}), "dead-letter topic")
		})
	}
}
