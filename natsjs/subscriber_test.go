package natsjs_test

import (
	"context"
	"testing"

	"github.com/go-relay/relay/internal/testkit/natstest"
)

// A Subscriber kept every subscription it ever ran, with its queue and held
// map, until Close: a long-lived Subscriber whose subscriptions come and go
// (one per request, say) grew without bound.
func TestSubscriberForgetsFinishedSubscriptions(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	sub := newSubscriber(t, js)
	topic := natstest.Topic(t, "sessions")
	for range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		ch, err := sub.Subscribe(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		for range ch { // closed once the subscription stopped
		}
	}
	eventually(t, func() bool { return sub.Running() == 0 }, "finished subscriptions forgotten")
}
