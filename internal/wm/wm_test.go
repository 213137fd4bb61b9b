package wm_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/testkit"
	"github.com/go-relay/relay/internal/wm"
)

const wait = 15 * time.Second // bound of every wait for something that must happen

// subscribe starts wm.Subscribe over a stand-in engine and returns its
// channel and the engine's process function. The subscription stops at the
// end of the test.
func subscribe(t *testing.T) (<-chan *message.Message, wm.Process) {
	t.Helper()
	closing := make(chan struct{})
	var wg sync.WaitGroup
	var process wm.Process
	out, err := wm.Subscribe(context.Background(), closing, &wg, func(p wm.Process) (func(), error) {
		process = p
		return func() {}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(closing)
		testkit.Wait(t, &wg, wait, "the subscription's goroutines after closing")
	})
	return out, process
}

// deliver runs process for a delivery of uuid in the background and returns
// the message sent on out and the channel of process's result.
func deliver(t *testing.T, out <-chan *message.Message, process wm.Process, engineCtx context.Context, uuid string) (*message.Message, <-chan error) {
	t.Helper()
	res := make(chan error, 1)
	go func() { res <- process(engineCtx, &delivery.Delivery{Message: delivery.Message{UUID: uuid}}) }()
	select {
	case msg := <-out:
		return msg, res
	case <-time.After(wait):
		t.Fatalf("message %s not sent on the channel", uuid)
		return nil, nil
	}
}

func result(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(wait):
		t.Fatal("process did not return")
		return nil
	}
}

// TestMessageContextEndsWithItsEngine: the context of a message out on the
// channel ends when the engine that delivered it stops, and the delivery
// counts as not processed; an engine started anew delivers messages whose
// context is live, though the one before it has stopped.
func TestMessageContextEndsWithItsEngine(t *testing.T) {
	out, process := subscribe(t)
	first, stopFirst := context.WithCancel(context.Background())
	defer stopFirst()

	msg, res := deliver(t, out, process, first, "acked")
	msg.Ack()
	if err := result(t, res); err != nil {
		t.Fatalf("acked message: process returned %v", err)
	}
	select {
	case <-msg.Context().Done():
	case <-time.After(wait):
		t.Fatal("an acked message's context did not end")
	}

	msg, res = deliver(t, out, process, first, "held")
	stopFirst()
	select {
	case <-msg.Context().Done():
	case <-time.After(wait):
		t.Fatal("the context of a message out on the channel did not end when its engine stopped")
	}
	if err := result(t, res); !errors.Is(err, delivery.ErrStopped) {
		t.Fatalf("message out when its engine stopped: process returned %v, want %v", err, delivery.ErrStopped)
	}

	second, stopSecond := context.WithCancel(context.Background())
	defer stopSecond()
	msg, res = deliver(t, out, process, second, "restarted")
	if err := msg.Context().Err(); err != nil {
		t.Fatalf("a message of the engine started anew has an ended context: %v", err)
	}
	msg.Ack()
	if err := result(t, res); err != nil {
		t.Fatalf("message of the engine started anew: process returned %v", err)
	}
}
