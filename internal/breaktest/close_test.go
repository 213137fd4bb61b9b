package breaktest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/natstest"
	"github.com/go-relay/relay/natsjs"
)

// shutdownDeadline is the deadline the Shutdown tests give; shutdownBound is
// how long Shutdown may take past it on a loaded machine.
const (
	shutdownDeadline = 300 * time.Millisecond
	shutdownBound    = 5 * time.Second
)

// TestShutdownWithDeadlineReturnsWhileHandlerIsBlocked checks the bounded
// variant of Close: with a handler (byte face) or a message out on the channel
// (Watermill face) that does not finish, Shutdown(ctx) returns soon after ctx's
// deadline; on the byte face it returns an error wrapping
// context.DeadlineExceeded and Publish returns relay.ErrClosed afterwards; on
// the Watermill face, where a message out counts as not processed once
// shutdown starts, it may also return nil. Once the handler is released, a
// later Close waits for it and returns nil. It guards against a shutdown that
// can only be bounded by the handler (the seed's unbounded Close) and against
// a Shutdown that ignores its context. Close itself waits without bound, as
// documented.
func TestShutdownWithDeadlineReturnsWhileHandlerIsBlocked(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		t.Run("broker", func(t *testing.T) {
			topic := e.topic("block")
			b := e.broker(t, cfg{})
			sd, ok := b.(shutdowner)
			if !ok {
				t.Skipf("%T has no Shutdown(context.Context) error method yet", b)
			}
			release := make(chan struct{})
			var once sync.Once
			releaseAll := func() { once.Do(func() { close(release) }) }
			t.Cleanup(releaseAll) // runs before the broker's Close (LIFO)
			entered := make(chan struct{}, 1)
			must(t, b.Subscribe(topic, func([]byte) error {
				select {
				case entered <- struct{}{}:
				default:
				}
				<-release
				return nil
			}))
			pubCtx(t, b, topic, []byte("x"))
			select {
			case <-entered:
			case <-time.After(10 * time.Second):
				t.Fatal("message not delivered within 10s")
			}
			ctx, cancel := context.WithTimeout(context.Background(), shutdownDeadline)
			defer cancel()
			var err error
			if !within(shutdownDeadline+shutdownBound, func() { err = sd.Shutdown(ctx) }) {
				t.Fatalf("Shutdown with a %v deadline did not return within %v while a handler is blocked", shutdownDeadline, shutdownDeadline+shutdownBound)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown with a handler still blocked = %v, want an error wrapping context.DeadlineExceeded", err)
			}
			if err := b.Publish(context.Background(), topic, []byte("y")); !errors.Is(err, relay.ErrClosed) {
				t.Errorf("Publish after Shutdown = %v, want ErrClosed", err)
			}
			releaseAll()
			closeBounded(t, b.Close)
		})
		t.Run("subscriber", func(t *testing.T) {
			topic := e.topic("block-wm")
			p := e.pub(t)
			s := e.sub(t, cfg{})
			sd, ok := s.(shutdowner)
			if !ok {
				t.Skipf("%T has no Shutdown(context.Context) error method yet", s)
			}
			ch, err := s.Subscribe(context.Background(), topic)
			must(t, err)
			must(t, p.Publish(topic, message.NewMessage(watermill.NewUUID(), []byte("x"))))
			var m *message.Message
			select {
			case m = <-ch: // held: neither acked nor nacked
			case <-time.After(10 * time.Second):
				t.Fatal("message not delivered within 10s")
			}
			ctx, cancel := context.WithTimeout(context.Background(), shutdownDeadline)
			defer cancel()
			if !within(shutdownDeadline+shutdownBound, func() { err = sd.Shutdown(ctx) }) {
				t.Fatalf("Shutdown with a %v deadline did not return within %v while a message is out unacked", shutdownDeadline, shutdownDeadline+shutdownBound)
			}
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown with a message out unacked = %v, want nil or an error wrapping context.DeadlineExceeded", err)
			}
			m.Ack()
			closeBounded(t, s.Close)
		})
	})
}

// TestShutdownWithDeadlineFromInsideHandlerReturns checks that a handler may
// call Shutdown(ctx) on its own broker: Shutdown cannot finish waiting for the
// handler that calls it, so it returns at ctx's deadline with an error
// wrapping context.DeadlineExceeded, and the broker's later Close returns once
// the handler did. It guards against the self-deadlock of the seed's Close
// (which still applies to Close, documented as a misuse: Close must not be
// called from inside a handler).
func TestShutdownWithDeadlineFromInsideHandlerReturns(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		topic := e.topic("selfclose")
		b := e.broker(t, cfg{})
		sd, ok := b.(shutdowner)
		if !ok {
			t.Skipf("%T has no Shutdown(context.Context) error method yet", b)
		}
		result := make(chan error, 1)
		must(t, b.Subscribe(topic, func([]byte) error {
			ctx, cancel := context.WithTimeout(context.Background(), shutdownDeadline)
			defer cancel()
			err := sd.Shutdown(ctx)
			select {
			case result <- err:
			default: // a redelivery: the first result is what counts
			}
			return nil
		}))
		pubCtx(t, b, topic, []byte("x"))
		select {
		case err := <-result:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown from inside a handler = %v, want an error wrapping context.DeadlineExceeded", err)
			}
		case <-time.After(10*time.Second + shutdownDeadline):
			t.Fatalf("Shutdown(ctx with %v deadline) called from inside a handler did not return within 10s (self-deadlock)", shutdownDeadline)
		}
		closeBounded(t, b.Close)
	})
}

// TestPublishAndSubscribeRacingCloseLoseNothing runs Publish from 8 goroutines
// and Subscribe from another while 4 goroutines call Close at once. Every
// Publish and Subscribe returns nil or relay.ErrClosed, every Close returns
// nil, and every message whose Publish returned nil is handled, by the racing
// subscriptions or by a later broker of the same group. It guards against a
// Close that is not safe for concurrent use, a Publish accepted but dropped by
// a closing broker, and messages taken by a closing subscription and lost.
func TestPublishAndSubscribeRacingCloseLoseNothing(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		topic := e.topic("race")
		c := cfg{ackWait: time.Second}
		b := e.broker(t, c)
		var handled sync.Map // payload → struct{}
		record := func(p []byte) error { handled.Store(string(p), struct{}{}); return nil }

		var mu sync.Mutex
		var accepted []string
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 50 {
					p := fmt.Sprintf("%d-%d", g, i)
					// A generous bound: on a loaded machine a publish racing
					// Close may wait its turn for seconds; only an error
					// other than ErrClosed breaks the contract.
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					err := b.Publish(ctx, topic, []byte(p))
					cancel()
					switch {
					case err == nil:
						mu.Lock()
						accepted = append(accepted, p)
						mu.Unlock()
					case errors.Is(err, relay.ErrClosed):
					default:
						t.Errorf("Publish during Close = %v, want nil or ErrClosed", err)
					}
				}
			})
		}
		wg.Go(func() {
			for range 20 {
				if err := b.Subscribe(topic, record); err != nil && !errors.Is(err, relay.ErrClosed) {
					t.Errorf("Subscribe during Close = %v, want nil or ErrClosed", err)
				}
			}
		})
		// Let the race start: close once some publishes went through.
		if !poll(10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(accepted) > 0 }) {
			t.Fatal("no Publish succeeded within 10s")
		}
		var cw sync.WaitGroup
		for range 4 {
			cw.Go(func() { closeBounded(t, b.Close) })
		}
		cw.Wait()
		wg.Wait()

		b2 := e.broker(t, c)
		must(t, b2.Subscribe(topic, record))
		mu.Lock()
		want := append([]string(nil), accepted...)
		mu.Unlock()
		var missing []string
		poll(60*time.Second, func() bool { // ack wait plus claims, on a loaded machine
			missing = missing[:0]
			for _, p := range want {
				if _, ok := handled.Load(p); !ok {
					missing = append(missing, p)
				}
			}
			return len(missing) == 0
		})
		if len(missing) > 0 {
			t.Errorf("%d of %d accepted publishes never handled within 60s, e.g. %q", len(missing), len(want), missing[0])
		}
	})
}

// TestNATSLargestPublishablePayloadCanBeDeadLettered checks that Publish keeps
// natsjs.DeadLetterReserve bytes of the server's max_payload free (a payload
// of max_payload less the reserve is refused with relay.ErrPayloadTooLarge,
// and the byte face's own headers take under 512 bytes more), and that the
// largest payload Publish accepts, failing permanently, reaches the
// dead-letter topic byte for byte. It guards against a dead letter refused as
// too large once its metadata headers are added, which left the message
// redelivered forever instead of dead-lettered.
func TestNATSLargestPublishablePayloadCanBeDeadLettered(t *testing.T) {
	const headerRoom = 512 // more than the byte face's UUID and Nats-Msg-Id headers
	e := natsEnv(t, natstest.Config{MaxPayload: 64 * 1024})
	topic := e.topic("big")
	b := e.broker(t, cfg{maxDeliver: 1})
	dead := watchDead(t, e, topic+".dead")
	limit := int(e.nc.MaxPayload())
	probe := e.topic("probe")
	publish := func(n int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return b.Publish(ctx, probe, make([]byte, n))
	}
	ceiling := limit - natsjs.DeadLetterReserve
	if err := publish(ceiling); !errors.Is(err, relay.ErrPayloadTooLarge) {
		t.Fatalf("Publish of %d bytes (max_payload %d less DeadLetterReserve %d) = %v, want ErrPayloadTooLarge",
			ceiling, limit, natsjs.DeadLetterReserve, err)
	}
	lo, hi := ceiling-headerRoom, ceiling-1
	if err := publish(lo); err != nil {
		t.Fatalf("Publish of %d bytes (max_payload %d less DeadLetterReserve less %d) = %v, want nil", lo, limit, headerRoom, err)
	}
	for lo < hi { // the largest size Publish accepts
		mid := (lo + hi + 1) / 2
		switch err := publish(mid); {
		case err == nil:
			lo = mid
		case errors.Is(err, relay.ErrPayloadTooLarge):
			hi = mid - 1
		default:
			t.Fatalf("Publish of %d bytes (max_payload %d): untyped error %v", mid, limit, err)
		}
	}
	payload := bytes.Repeat([]byte("z"), lo)
	pubCtx(t, b, topic, payload)
	var calls atomic.Int32
	must(t, b.Subscribe(topic, func([]byte) error { calls.Add(1); return relay.Permanent(errors.New("poison")) }))
	select {
	case m := <-dead:
		if !bytes.Equal(m.Payload, payload) {
			t.Errorf("dead letter payload of %d bytes differs from the %d bytes published", len(m.Payload), lo)
		}
		if r := m.Metadata.Get(relay.MetadataReason); !strings.Contains(r, "poison") {
			t.Errorf("dead letter reason %q does not hold the handler's error", r)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("message of %d bytes (the largest Publish accepts, max_payload %d) failing permanently never reached the dead-letter topic within 10s; handler calls=%d",
			lo, limit, calls.Load())
	}
}

// TestWatermillFirstOfAckAndNackWins checks the Watermill face when a handler
// acks twice, acks then nacks, or nacks then acks: nothing panics, an acked
// message is not delivered again (over a 500ms window), and a message nacked
// first is redelivered. It guards against settling one delivery twice.
func TestWatermillFirstOfAckAndNackWins(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		topic := e.topic("acks")
		p := e.pub(t)
		s := e.sub(t, cfg{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch, err := s.Subscribe(ctx, topic)
		must(t, err)
		for i := range 3 {
			must(t, p.Publish(topic, message.NewMessage(watermill.NewUUID(), []byte{byte(i)})))
		}
		seen := map[byte]int{}
		deadline := time.After(10 * time.Second)
		for len(seen) < 3 || seen[2] < 2 {
			select {
			case m := <-ch:
				seen[m.Payload[0]]++
				switch m.Payload[0] {
				case 0:
					m.Ack()
					m.Ack()
				case 1:
					m.Ack()
					m.Nack()
				case 2:
					if seen[2] == 1 {
						m.Nack()
						m.Ack()
					} else {
						m.Ack()
					}
				}
			case <-deadline:
				t.Fatalf("deliveries per message after 10s: %v; want messages 0 and 1 once, message 2 (nacked first) twice", seen)
			}
		}
		if seen[0] != 1 || seen[1] != 1 {
			t.Errorf("deliveries per message: %v; want messages 0 and 1 (acked first) once", seen)
		}
		select {
		case m := <-ch:
			m.Ack()
			t.Errorf("message %d delivered again after it was acked (deliveries %v)", m.Payload[0], seen)
		case <-time.After(500 * time.Millisecond):
		}
	})
}
