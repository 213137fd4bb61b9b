package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/examples/internal/exampleenv"
	"github.com/go-relay/relay/retrier"
)

// stepTimeout bounds the wait for one order's fate.
const stepTimeout = 15 * time.Second

// order is one message of the demo and the way its handler behaves.
type order struct {
	id, note string
	fail     func(attempt int) error // nil: succeed
}

var orders = []order{
	{id: "order-1", note: ""},
	{id: "order-2", note: "fails once", fail: func(attempt int) error {
		if attempt == 1 {
			return errors.New("stock service timed out")
		}
		return nil
	}},
	{id: "order-3", note: "always fails", fail: func(int) error {
		return errors.New("payment gateway unavailable")
	}},
	{id: "order-4", note: "permanent failure", fail: func(int) error {
		return relay.Permanent(errors.New("unknown customer"))
	}},
}

// event is what a handler reports; last is true when the order's fate is
// sealed (handled, or dead-lettered).
type event struct {
	id, text   string
	last       bool
	deadLetter bool
}

// run opens the broker, plays the orders one after the other and prints what
// happens to each.
func run(ctx context.Context, cfg config, out io.Writer) error {
	// Failures are the point of the demo: log only the unexpected, unless -v.
	logger := exampleenv.Logger(cfg.verbose)
	be, err := openBackend(cfg, logger)
	if err != nil {
		return err
	}
	defer be.close()

	// natsjs and redisstreams report HandlesRetries() == true: they were
	// built with the same max deliver and backoff, and retrier.New would
	// refuse options for them rather than ignore them. The plain memory queue
	// is wrapped. New takes ownership: closing b closes the broker.
	b := be.broker
	if nr, ok := b.(retrier.NativeRetrier); !ok || !nr.HandlesRetries() {
		b, err = retrier.New(be.broker, retrier.WithMaxDeliver(maxDeliver),
			retrier.WithBackoff(minBackoff, maxBackoff), retrier.WithLogger(logger))
		if err != nil {
			_ = be.broker.Close()
			return err
		}
	}
	fmt.Fprintf(out, "direct: relay.Broker on %s\n", be.desc)
	if b == be.broker {
		fmt.Fprintf(out, "retries: native (HandlesRetries() is true), configured on the broker itself\n")
	} else {
		fmt.Fprintf(out, "retries: by retrier.New around the plain queue\n")
	}
	fmt.Fprintf(out, "max deliver %d, backoff %v to %v\n", maxDeliver, minBackoff, maxBackoff)

	events := make(chan event, 64)
	done := make(chan struct{}) // closed before Close, so that no handler blocks on events
	report := func(e event) {
		select {
		case events <- e:
		case <-done:
		}
	}
	var closeOnce sync.Once
	closeBroker := func() error {
		var err error
		closeOnce.Do(func() { close(done); err = b.Close() })
		return err
	}
	defer func() { _ = closeBroker() }() // the happy path returns its error

	topic := be.ns + "orders"
	dead := topic + ".dead" // the default dead-letter topic of every backend and of the retrier
	if err := subscribe(b, topic, dead, report); err != nil {
		return err
	}
	fmt.Fprintf(out, "subscribed to %q and to its dead-letter topic %q\n", topic, dead)

	var handled, deadLettered int
	for _, o := range orders {
		note := ""
		if o.note != "" {
			note = " (" + o.note + ")"
		}
		fmt.Fprintf(out, "\npublish %s%s\n", o.id, note)
		if err := b.Publish(ctx, topic, []byte(o.id)); err != nil {
			return err
		}
		e, err := await(ctx, events, o.id, out)
		if err != nil {
			return err
		}
		if e.deadLetter {
			deadLettered++
		} else {
			handled++
		}
	}

	fmt.Fprintln(out)
	err = b.Publish(ctx, "orders.*", []byte("x"))
	fmt.Fprintf(out, "publish to %q: %v (ErrInvalidTopic: %t)\n", "orders.*", err, errors.Is(err, relay.ErrInvalidTopic))
	if err := closeBroker(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	err = b.Publish(ctx, topic, []byte("order-5"))
	fmt.Fprintf(out, "publish after Close: %v (ErrClosed: %t)\n", err, errors.Is(err, relay.ErrClosed))
	fmt.Fprintf(out, "\n%d orders handled, %d dead-lettered, nothing lost\n", handled, deadLettered)
	return nil
}

// subscribe starts the order handler on topic and a dead-letter reader on
// dead. Each reports what it does.
func subscribe(b relay.Broker, topic, dead string, report func(event)) error {
	var mu sync.Mutex
	attempts := map[string]int{} // the byte face has no attempt number: count them
	byID := map[string]order{}
	for _, o := range orders {
		byID[o.id] = o
	}
	err := b.Subscribe(topic, func(payload []byte) error {
		id := string(payload)
		mu.Lock()
		attempts[id]++
		attempt := attempts[id]
		mu.Unlock()
		var err error
		if f := byID[id].fail; f != nil {
			err = f(attempt)
		}
		if err != nil {
			report(event{id: id, text: fmt.Sprintf("handler: attempt %d failed: %v", attempt, err)})
			return err // the broker (or the retrier) retries it, or dead-letters it
		}
		report(event{id: id, text: fmt.Sprintf("handler: attempt %d ok", attempt), last: true})
		return nil
	})
	if err != nil {
		return err
	}
	return b.Subscribe(dead, func(payload []byte) error {
		// On the byte face a dead letter is the payload alone; the Watermill
		// face also shows the source topic, attempts and reason (see
		// examples/deadletters).
		report(event{id: string(payload), text: fmt.Sprintf("dead letter on %q: %s", dead, payload), last: true, deadLetter: true})
		return nil
	})
}

// await prints the events of order id until its fate is sealed, and returns
// the last one.
func await(ctx context.Context, events <-chan event, id string, out io.Writer) (event, error) {
	timeout := time.After(stepTimeout)
	for {
		select {
		case e := <-events:
			if e.id != id {
				return e, fmt.Errorf("unexpected event for %s while waiting for %s: %s", e.id, id, e.text)
			}
			fmt.Fprintf(out, "  %s\n", e.text)
			if e.last {
				return e, nil
			}
		case <-timeout:
			return event{}, fmt.Errorf("%s: no outcome after %v", id, stepTimeout)
		case <-ctx.Done():
			return event{}, ctx.Err()
		}
	}
}
