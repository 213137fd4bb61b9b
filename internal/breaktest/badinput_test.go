package breaktest_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
)

// badTopics are topics that relay.ValidateTopic rejects: empty, white space
// (ASCII and Unicode), wildcards, empty tokens, a "$" system prefix, 256 bytes,
// control bytes and invalid UTF-8.
var badTopics = []string{"", " ", "a b", "a\tb", "*", ">", "a.*", "a.>", ".a", "a.", "a..b", "$JS.x", strings.Repeat("x", 256), "a\x00b", "\xff", "a\u00a0b"}

// TestBadInputGetsTypedErrorsAndOddPayloadsRoundTrip checks the DESIGN table
// "Bad input gets a clear error, and nothing is lost" on both faces of every
// backend: each bad topic is refused with relay.ErrInvalidTopic by Publish and
// Subscribe, a nil handler with relay.ErrNilHandler, a canceled or expired
// context with its error, and use after Close with relay.ErrClosed (Close
// being idempotent); nil, empty, binary, invalid UTF-8 and 100 kB payloads are
// delivered byte for byte. It guards against a backend that accepts a topic
// another backend refuses, returns untyped errors, or mangles payloads.
func TestBadInputGetsTypedErrorsAndOddPayloadsRoundTrip(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		b := e.broker(t, cfg{})
		p := e.pub(t)
		s := e.sub(t, cfg{})
		ctx := context.Background()
		ok := e.topic("ok")

		t.Run("invalid topics", func(t *testing.T) {
			for _, tp := range badTopics {
				if err := b.Publish(ctx, tp, []byte("x")); !errors.Is(err, relay.ErrInvalidTopic) {
					t.Errorf("broker Publish(%q) = %v, want ErrInvalidTopic", tp, err)
				}
				if err := b.Subscribe(tp, func([]byte) error { return nil }); !errors.Is(err, relay.ErrInvalidTopic) {
					t.Errorf("broker Subscribe(%q) = %v, want ErrInvalidTopic", tp, err)
				}
				if err := p.Publish(tp, message.NewMessage(watermill.NewUUID(), []byte("x"))); !errors.Is(err, relay.ErrInvalidTopic) {
					t.Errorf("wm Publish(%q) = %v, want ErrInvalidTopic", tp, err)
				}
				if _, err := s.Subscribe(ctx, tp); !errors.Is(err, relay.ErrInvalidTopic) {
					t.Errorf("wm Subscribe(%q) = %v, want ErrInvalidTopic", tp, err)
				}
			}
		})

		t.Run("nil handler", func(t *testing.T) {
			if err := b.Subscribe(ok, nil); !errors.Is(err, relay.ErrNilHandler) {
				t.Errorf("Subscribe(nil handler) = %v, want ErrNilHandler", err)
			}
		})

		t.Run("done context", func(t *testing.T) {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if err := b.Publish(cctx, ok, []byte("x")); !errors.Is(err, context.Canceled) {
				t.Errorf("Publish(canceled ctx) = %v, want context.Canceled", err)
			}
			dctx, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Second))
			defer cancel2()
			if err := b.Publish(dctx, ok, []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Publish(expired ctx) = %v, want context.DeadlineExceeded", err)
			}
		})

		t.Run("payloads byte for byte", func(t *testing.T) {
			topic := e.topic("payloads")
			payloads := [][]byte{nil, {}, {0}, {0xff, 0xfe, 0, 1}, []byte("\xc3\x28 invalid utf8"), bytes.Repeat([]byte{0}, 100000)}
			for _, pl := range payloads {
				pubCtx(t, b, topic, pl)
			}
			c := newCollector()
			must(t, b.Subscribe(topic, c.handler))
			if !c.waitN(t, len(payloads), 10*time.Second) {
				t.Fatalf("got %d of %d payloads within 10s", c.n(), len(payloads))
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			for _, pl := range payloads {
				found := false
				for _, g := range c.got {
					if bytes.Equal(g, pl) {
						found = true
					}
				}
				if !found {
					t.Errorf("payload of len %d not delivered byte for byte", len(pl))
				}
			}
		})

		t.Run("after close", func(t *testing.T) {
			closeBounded(t, b.Close)
			closeBounded(t, b.Close) // idempotent
			if err := b.Publish(ctx, ok, nil); !errors.Is(err, relay.ErrClosed) {
				t.Errorf("Publish after Close = %v, want ErrClosed", err)
			}
			if err := b.Subscribe(ok, func([]byte) error { return nil }); !errors.Is(err, relay.ErrClosed) {
				t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
			}
			must(t, p.Close())
			if err := p.Publish(ok, message.NewMessage(watermill.NewUUID(), nil)); !errors.Is(err, relay.ErrClosed) {
				t.Errorf("wm Publish after Close = %v, want ErrClosed", err)
			}
			closeBounded(t, s.Close)
			if _, err := s.Subscribe(ctx, ok); !errors.Is(err, relay.ErrClosed) {
				t.Errorf("wm Subscribe after Close = %v, want ErrClosed", err)
			}
		})
	})
}
