// Command newbackend shows how the author of a new relay backend checks it
// against relay's conformance suite, package pubsubtest.
//
// The backend here is deliberately tiny: "metered", a wrapper that counts per
// topic the messages published and the deliveries made, over relay's memory
// backend, with both faces (a [relay.Broker], and a Watermill
// message.Publisher and message.Subscriber). Small as it is, a wrapper like
// this can break the contract, and the suite says so: wrapping a nil handler
// fails "a nil handler is rejected" (Subscribe must return
// relay.ErrNilHandler); rewrapping a handler's error with %v fails "a
// permanent error sends the message to the dead-letter topic after one
// delivery"; a forwarding goroutine that cannot give up a message makes
// Watermill's TestContinueAfterSubscribeClose hang until go test's -timeout
// names it. One thing the suite does not check is that the wrapper reports
// the wrapped broker's HandlesRetries (without it, retrier.New would wrap a
// native broker in a second retry loop); TestHandlesRetries does.
//
// main_test.go is the part to copy: a pubsubtest.Harness that maps the suite's
// Config onto the backend's options, and two test functions calling
// pubsubtest.TestBroker and pubsubtest.TestWatermill. Run it with
//
//	go test ./examples/newbackend
//
// main itself only demonstrates the backend: it publishes three greetings,
// handles them (one fails once and is redelivered) and prints the meter.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/go-relay/relay/memory"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "newbackend:", err)
		os.Exit(1)
	}
}

// run publishes three greetings on a metered memory broker, waits until each
// was handled and prints the meter's counts.
func run(ctx context.Context, out io.Writer) error {
	inner, err := memory.NewBroker(memory.WithConcurrency(1), memory.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		return err
	}
	meter := NewMeter()
	b := NewBroker(inner, meter)
	defer b.Close() // closes inner too

	const topic = "greetings"
	var mu sync.Mutex
	failed := false
	handled := make(chan string, 3)
	err = b.Subscribe(topic, func(payload []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if string(payload) == "bonjour" && !failed {
			failed = true
			return errors.New("not today") // redelivered after the backoff
		}
		handled <- string(payload)
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "newbackend: a metered broker over the memory backend\n")
	for _, greeting := range []string{"hello", "bonjour", "hallo"} {
		if err := b.Publish(ctx, topic, []byte(greeting)); err != nil {
			return err
		}
	}
	for range 3 {
		select {
		case <-handled:
		case <-time.After(10 * time.Second):
			return errors.New("greetings not handled after 10s")
		}
	}
	published, delivered := meter.Counts(topic)
	fmt.Fprintf(out, "meter %q: %d published, %d delivered (one greeting failed once and was redelivered)\n",
		topic, published, delivered)
	fmt.Fprintln(out, "run `go test ./examples/newbackend` to check it against the conformance suite")
	return nil
}
