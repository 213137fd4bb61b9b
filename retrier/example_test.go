package retrier_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/go-relay/relay/memory"
	"github.com/go-relay/relay/retrier"
)

// A memory broker made with WithNativeRetries(false) is a plain queue: it
// redelivers a failed message forever and never dead-letters it. The retrier in
// front of it makes three attempts, then writes the payload to "orders.dead".
func ExampleNew() {
	inner, err := memory.NewBroker(memory.WithNativeRetries(false))
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := retrier.New(inner,
		retrier.WithMaxDeliver(3),
		retrier.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		retrier.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	)
	if err != nil {
		fmt.Println(err)
		_ = inner.Close()
		return
	}
	defer b.Close() // closes inner too

	attempt := 0
	err = b.Subscribe("orders", func(payload []byte) error {
		attempt++
		fmt.Printf("attempt %d: %s\n", attempt, payload)
		return errors.New("payment service unavailable")
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	dead := make(chan string, 1)
	err = b.Subscribe("orders.dead", func(payload []byte) error {
		select {
		case dead <- string(payload):
		default: // only the first is printed
		}
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	if err := b.Publish(context.Background(), "orders", []byte("order 42")); err != nil {
		fmt.Println(err)
		return
	}
	select {
	case payload := <-dead:
		fmt.Println("dead letter:", payload)
	case <-time.After(5 * time.Second):
		fmt.Println("no dead letter")
	}
	// Output:
	// attempt 1: order 42
	// attempt 2: order 42
	// attempt 3: order 42
	// dead letter: order 42
}
