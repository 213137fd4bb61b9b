package natsjs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
	"github.com/nats-io/nats.go/jetstream"
)

// Close used to cancel the pull request in progress, and nats.go dropped the
// messages the server had already sent for it: they came back only after
// the ack wait. Every message fetched and not handled must come back at once.
func TestCloseNaksMessagesOfAnInterruptedFetch(t *testing.T) {
	s := natstest.Start(t)
	nc, js := connect(t, s)
	natstest.RequireServerAtLeast(t, nc, "2.10.14", "a Nak'd message that finds only a pull request without interest "+
		"waits for the ack wait there (server defect fixed in v2.10.14; see natsjs/pull.go)")
	closeRounds(t, s, js, closeLoad{topic: "interrupted", n: 1500, rounds: 6, size: 8 << 10, // large messages: a pull request takes a while to arrive
		concurrency: 32, work: 2 * time.Millisecond})
}

// closeLoad is the workload of [closeRounds].
type closeLoad struct {
	topic       string
	n, rounds   int
	size        int           // payload bytes
	concurrency int           // natsjs.WithConcurrency
	work        time.Duration // each handler call's time
}

// closeRounds publishes l.n messages, then consumes them with brokers of one
// group that close one after the other under load, each after handling its
// share, so that some Close interrupts a pull request; a last broker must get
// the rest well within the ack wait (a minute): a message fetched and not
// handled must come back at once.
func closeRounds(t *testing.T, s *natstest.Server, js jetstream.JetStream, l closeLoad) {
	t.Helper()
	topic := natstest.Topic(t, l.topic)
	opts := []natsjs.Option{natsjs.WithGroup("g"), natsjs.WithAckWait(time.Minute), natsjs.WithConcurrency(l.concurrency)}
	pub := newBroker(t, js, natsjs.WithGroup("producer"))
	filler := bytes.Repeat([]byte{'.'}, l.size)
	for i := range l.n {
		publish(t, pub, topic, append([]byte(strconv.Itoa(i)+" "), filler...))
	}
	var mu sync.Mutex
	handled := map[string]bool{}
	handler := func(p []byte) error {
		time.Sleep(l.work)
		id, _, _ := bytes.Cut(p, []byte(" "))
		mu.Lock()
		handled[string(id)] = true
		mu.Unlock()
		return nil
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(handled) }
	for round := range l.rounds {
		_, jsR := connect(t, s)
		b := newBroker(t, jsR, opts...)
		if err := b.Subscribe(topic, handler); err != nil {
			t.Fatal(err)
		}
		goal := min(l.n, count()+l.n/(2*l.rounds))
		for deadline := time.Now().Add(wait); count() < goal; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				var state string
				if c, err := js.Consumer(t.Context(), natsjs.StreamName(topic), natsjs.ConsumerName("g")); err == nil {
					if info, err := c.Info(t.Context()); err == nil {
						state = fmt.Sprintf("ack pending %d, pending %d, waiting requests %d, redelivered %d",
							info.NumAckPending, info.NumPending, info.NumWaiting, info.NumRedelivered)
					}
				}
				t.Fatalf("round %d: %d handled, not %d within %v; consumer: %s", round, count(), goal, wait, state)
			}
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	_, jsLast := connect(t, s)
	if err := newBroker(t, jsLast, opts...).Subscribe(topic, handler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second) // the ack wait is a minute
	for count() < l.n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := count(); got < l.n {
		t.Errorf("%d of %d messages handled within 10 s: Close left fetched messages leased until the ack wait", got, l.n)
	}
}

// Shutdown gives up on a handler that does not return once its context is
// done; the message stays pending and, its lease no longer extended, goes to
// another member of the group after the ack wait.
func TestShutdownIsBoundedAndLeavesRunningHandlersPending(t *testing.T) {
	s := natstest.Start(t)
	topic := natstest.Topic(t, "stuck")
	const ackWait = time.Second
	opts := []natsjs.Option{natsjs.WithGroup("g"), natsjs.WithAckWait(ackWait)}
	_, jsA := connect(t, s)
	a := newBroker(t, jsA, opts...)
	entered := make(chan struct{})
	release := make(chan struct{})
	if err := a.Subscribe(topic, func([]byte) error { close(entered); <-release; return errors.New("too late") }); err != nil {
		t.Fatal(err)
	}
	publish(t, a, topic, []byte("x"))
	select {
	case <-entered:
	case <-time.After(wait):
		close(release)
		t.Fatalf("handler not entered within %v", wait)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := a.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a blocked handler = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v, want about its 200 ms bound", d)
	}
	if err := a.Publish(context.Background(), topic, []byte("y")); !errors.Is(err, relay.ErrClosed) {
		t.Errorf("Publish after Shutdown = %v, want ErrClosed", err)
	}
	_, jsB := connect(t, s)
	got := make(chan string, 10)
	if err := newBroker(t, jsB, opts...).Subscribe(topic, func(p []byte) error { got <- string(p); return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != "x" {
			t.Errorf("got %q, want x", p)
		}
	case <-time.After(wait):
		t.Fatal("the message of the abandoned handler was not redelivered")
	}
	close(release)
	if err := a.Close(); err != nil { // waits for the released handler
		t.Fatal(err)
	}
}
