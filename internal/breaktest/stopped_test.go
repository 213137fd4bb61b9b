package breaktest_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/natsjs"
)

// waitHeld waits until the group holds at least n messages of topic as
// delivered and not acknowledged: JetStream's ack-pending count, or the
// Redis group's pending entries. The memory hub shows no such count; there it
// waits a fixed 300ms for the subscription to take messages ahead.
func waitHeld(t *testing.T, e *env, topic, group string, n int) {
	t.Helper()
	var held func() (int, error)
	switch {
	case e.js != nil:
		held = func() (int, error) {
			cons, err := e.js.Consumer(t.Context(), natsjs.StreamName(topic), natsjs.ConsumerName(group))
			if err != nil {
				return 0, err
			}
			info, err := cons.Info(t.Context())
			if err != nil {
				return 0, err
			}
			return info.NumAckPending, nil
		}
	case e.rc != nil:
		held = func() (int, error) {
			p, err := e.rc.XPending(t.Context(), topic, group).Result()
			if err == redis.Nil {
				return 0, nil
			}
			if err != nil {
				return 0, err
			}
			return int(p.Count), nil
		}
	default:
		time.Sleep(300 * time.Millisecond)
		return
	}
	var got int
	var err error
	if !poll(10*time.Second, func() bool { got, err = held(); return err == nil && got >= n }) {
		t.Fatalf("group %q holds %d messages of %q after 10s (err %v), want %d: the subscription does not read ahead", group, got, topic, err, n)
	}
}

// TestDeliveryHandedBackByCloseIsHandledBeforeDeadLetter has a subscription
// with concurrency 1 and max deliver 1 take a second message ahead while its
// only handler is busy, then closes it: Close hands the second message back
// unprocessed. A later broker of the group handles it, and it is not
// dead-lettered before that, although NATS and Redis count the handed-back
// delivery as an attempt (as documented). It guards against dead-lettering
// messages that no handler ever saw (NATS did, with WithMaxDeliver(1)), and
// against handed-back messages never redelivered.
func TestDeliveryHandedBackByCloseIsHandledBeforeDeadLetter(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		topic := e.topic("stopped")
		c := cfg{maxDeliver: 1, conc: 1, ackWait: time.Second}
		dead := watchDead(t, e, topic+".dead")
		b1 := e.broker(t, c)
		pubCtx(t, b1, topic, []byte("first"))
		pubCtx(t, b1, topic, []byte("second"))
		started := make(chan struct{}, 10)
		release := make(chan struct{})
		must(t, b1.Subscribe(topic, func(p []byte) error {
			started <- struct{}{}
			<-release
			return nil
		}))
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("first message not delivered within 10s")
		}
		waitHeld(t, e, topic, "g", 2)
		closed := make(chan struct{})
		go func() { closeBounded(t, b1.Close); close(closed) }()
		waitClosing(t, b1, e.topic("probe"))
		close(release)
		<-closed

		var handled atomic.Int32
		b2 := e.broker(t, c)
		must(t, b2.Subscribe(topic, func(p []byte) error {
			if string(p) == "second" {
				handled.Add(1)
			}
			return nil
		}))
		deadline := time.After(10 * time.Second)
		for handled.Load() == 0 {
			select {
			case m := <-dead:
				t.Fatalf("message handed back by Close was dead-lettered without being handled: payload %q reason %q attempts %s",
					m.Payload, m.Metadata.Get(relay.MetadataReason), m.Metadata.Get(relay.MetadataAttempts))
			case <-deadline:
				t.Fatal("message handed back by Close not redelivered within 10s")
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
}

// TestWatermillUnackedMessageAtCloseIsRedeliveredNotDeadLettered receives a
// message on a Watermill Subscriber with max deliver 1, neither acks nor
// nacks it, and closes the Subscriber: a new Subscriber of the group receives
// it, and it is not dead-lettered unprocessed, although NATS and Redis count
// the first delivery as an attempt. It guards against a message out on the
// channel at Close being lost, or dead-lettered without any handler having
// processed it (NATS did).
func TestWatermillUnackedMessageAtCloseIsRedeliveredNotDeadLettered(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		topic := e.topic("unacked")
		c := cfg{maxDeliver: 1, conc: 1, ackWait: 500 * time.Millisecond}
		dead := watchDead(t, e, topic+".dead")
		b := e.broker(t, c)
		pubCtx(t, b, topic, []byte("m"))
		s1 := e.sub(t, c)
		ch, err := s1.Subscribe(context.Background(), topic)
		must(t, err)
		select {
		case <-ch: // received, never acked
		case <-time.After(10 * time.Second):
			t.Fatal("not delivered within 10s")
		}
		closeBounded(t, s1.Close)

		s2 := e.sub(t, c)
		ch2, err := s2.Subscribe(context.Background(), topic)
		must(t, err)
		select {
		case m := <-ch2:
			m.Ack()
		case m := <-dead:
			t.Errorf("unacked message at Close was dead-lettered unprocessed: reason %q attempts %s",
				m.Metadata.Get(relay.MetadataReason), m.Metadata.Get(relay.MetadataAttempts))
		case <-time.After(15 * time.Second):
			t.Errorf("unacked message at Close not redelivered within 15s")
		}
	})
}
