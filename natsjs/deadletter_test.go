package natsjs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-relay/relay/internal/natstest"
	"github.com/go-relay/relay/natsjs"
)

// A dead letter's Nats-Msg-Id was built from group, stream and stream
// sequence. When an operator deletes the source stream and relay creates it
// again, sequences restart at 1: within the dead-letter stream's duplicate
// window the second poison message got the first one's id, JetStream stored
// nothing, and relay acked the source. Two poison messages, one dead letter.
func TestDeadLetterAfterStreamRecreationIsNotADuplicate(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	const topic = "refunds"
	dead := deadLetters(t, js, topic)
	poison := func(payload string) {
		t.Helper()
		b := newBroker(t, js, natsjs.WithMaxDeliver(1))
		if err := b.Subscribe(topic, func([]byte) error { return errors.New("refund refused") }); err != nil {
			t.Fatal(err)
		}
		publish(t, b, topic, []byte(payload))
		dl := receive(t, dead, "dead letter of "+payload)
		dl.Ack()
		checkDeadLetter(t, dl, topic, "1", "1", "refund refused", []byte(payload))
		eventually(t, func() bool { return consumerSettled(t, js, topic, natsjs.DefaultGroup) }, "source acknowledged")
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	poison("first")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, natsjs.StreamName(topic)); err != nil {
		t.Fatal(err) // the operator's `nats stream rm`
	}
	poison("second") // relay creates the stream again: sequence 1 once more
}
