package pubsubtest

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
)

// testSubscribeInitialize asks a subscriber that implements Watermill's
// message.SubscribeInitializer to prepare a topic for its group: the call is
// idempotent, consumes nothing (a message published after it reaches the
// group's later Subscribe), and returns ErrInvalidTopic and, after Close,
// ErrClosed like Subscribe.
func (s *wmSuite) testSubscribeInitialize(t *testing.T) {
	cfg := DefaultConfig()
	topic := NewTopic(t)
	sub := s.subscriber(t, cfg)
	init, ok := sub.(message.SubscribeInitializer)
	if !ok {
		t.Skipf("%T does not implement message.SubscribeInitializer", sub)
	}
	for i := range 2 {
		if err := init.SubscribeInitialize(topic); err != nil {
			t.Fatalf("SubscribeInitialize(%q) #%d: %v", topic, i+1, err)
		}
	}
	sent := message.NewMessage(watermill.NewUUID(), []byte("initialized"))
	publishWM(t, s.publisher(t, DefaultConfig()), topic, sent)
	ch := subscribeWM(t, sub, topic)
	got := receiveWM(t, ch, waitShort, "Subscribe after SubscribeInitialize")
	got.Ack()
	if got.UUID != sent.UUID {
		t.Errorf("received %q, want %q", got.UUID, sent.UUID)
	}
	err := init.SubscribeInitialize("orders.*")
	if err := checkErrorIs("SubscribeInitialize of an invalid topic", err, relay.ErrInvalidTopic); err != nil {
		t.Error(err)
	}
	if err := sub.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	err = init.SubscribeInitialize(topic)
	if err := checkErrorIs("SubscribeInitialize after Close", err, relay.ErrClosed); err != nil {
		t.Error(err)
	}
}
