package natsjs_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

// Without lease extension, a handler slower than the ack wait has its message
// delivered again to another consumer while it still runs.
func TestSlowHandlerIsNotDeliveredTwice(t *testing.T) {
	s := natstest.Start(t)
	topic := natstest.Topic(t, "reports")
	const ackWait = time.Second
	opts := []natsjs.Option{natsjs.WithGroup("reporting"), natsjs.WithAckWait(ackWait)}
	var calls atomic.Int32
	var done atomic.Bool
	handler := func([]byte) error {
		calls.Add(1)
		time.Sleep(3 * ackWait)
		done.Store(true)
		return nil
	}
	for range 2 { // two consumers of the group: a redelivery could go to either
		_, js := connect(t, s)
		if err := newBroker(t, js, opts...).Subscribe(topic, handler); err != nil {
			t.Fatal(err)
		}
	}
	_, js := connect(t, s)
	publish(t, newBroker(t, js, natsjs.WithGroup("producer")), topic, []byte("quarterly"))
	eventually(t, done.Load, "slow handler finished")
	checkQuiet(t, 2*ackWait, func() bool { return calls.Load() > 1 }, "message delivered again")
	if n := calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
	eventually(t, func() bool { return consumerSettled(t, js, topic, "reporting") }, "message acknowledged")
}
