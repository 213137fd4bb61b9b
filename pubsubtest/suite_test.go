package pubsubtest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/memharness"
	"github.com/go-relay/relay/pubsubtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The suite's proof that it passes on a conforming backend is memory's own
// conformance test (memory/conformance_test.go), on the same harness as the
// defects below; running it here too would only run it twice.

// A defect is a deliberate contract violation wrapped around a memory broker,
// and the TestBroker sub-test that must catch it.
type defect struct {
	name    string
	subtest string
	wrap    func(b relay.Broker) relay.Broker // nil leaves the broker as it is
	config  func(cfg *pubsubtest.Config)      // nil leaves the suite's Config as it is
}

var defects = []defect{
	{"duplicates every 10th message", "every message is received exactly once per group when handlers succeed",
		func(b relay.Broker) relay.Broker {
			var n atomic.Int64
			return &broken{Broker: b, publish: func(ctx context.Context, topic string, p []byte) error {
				if n.Add(1)%10 == 0 {
					if err := b.Publish(ctx, topic, p); err != nil {
						return err
					}
				}
				return b.Publish(ctx, topic, p)
			}}
		}, nil},
	{"appends a byte to every payload", "payloads round-trip byte for byte",
		func(b relay.Broker) relay.Broker {
			return &broken{Broker: b, publish: func(ctx context.Context, topic string, p []byte) error {
				return b.Publish(ctx, topic, append(bytes.Clone(p), 0))
			}}
		}, nil},
	{"retries a failed handler at once", "a failed delivery is redelivered after a backoff",
		func(b relay.Broker) relay.Broker {
			return &broken{Broker: b, subscribe: func(topic string, h relay.Handler) error {
				return b.Subscribe(topic, func(p []byte) (err error) {
					for range 2 {
						if err = h(p); err == nil {
							return nil
						}
					}
					return err
				})
			}}
		}, nil},
	{"retries a failed handler after 55% of the minimum backoff", "a failed delivery is redelivered after a backoff",
		func(b relay.Broker) relay.Broker {
			// A backoff whose jitter goes below the minimum (the suite
			// used to accept half of it).
			early := pubsubtest.DefaultConfig().MinBackoff * 55 / 100
			return &broken{Broker: b, subscribe: func(topic string, h relay.Handler) error {
				return b.Subscribe(topic, func(p []byte) error {
					if err := h(p); err == nil {
						return nil
					}
					time.Sleep(early)
					return h(p)
				})
			}}
		}, nil},
	{"retries a permanent failure", "a permanent error sends the message to the dead-letter topic after one delivery",
		func(b relay.Broker) relay.Broker {
			return &broken{Broker: b, subscribe: func(topic string, h relay.Handler) error {
				return b.Subscribe(topic, func(p []byte) error {
					if err := h(p); err != nil {
						return errors.New(err.Error()) // drops the ErrPermanent mark
					}
					return nil
				})
			}}
		}, nil},
	{"returns from Close before handlers finish", "Close waits for running handlers to return",
		func(b relay.Broker) relay.Broker {
			return &broken{Broker: b, close: func() error {
				go b.Close()
				return nil
			}}
		}, nil},
	{"swallows ErrClosed", "Publish and Subscribe return ErrClosed after Close",
		func(b relay.Broker) relay.Broker {
			return &broken{Broker: b,
				publish: func(ctx context.Context, topic string, p []byte) error {
					return ignore(b.Publish(ctx, topic, p), relay.ErrClosed)
				},
				subscribe: func(topic string, h relay.Handler) error { return ignore(b.Subscribe(topic, h), relay.ErrClosed) },
			}
		}, nil},
	{"leaks a goroutine per subscription", "Close leaves no goroutine behind",
		func(b relay.Broker) relay.Broker {
			never := make(chan struct{})
			return &broken{Broker: b, subscribe: func(topic string, h relay.Handler) error {
				go func() { <-never }()
				return b.Subscribe(topic, h)
			}}
		}, nil},
	{"accepts invalid topics", "an invalid topic is rejected by Publish and Subscribe",
		func(b relay.Broker) relay.Broker {
			return &broken{Broker: b,
				publish: func(ctx context.Context, topic string, p []byte) error {
					return ignore(b.Publish(ctx, topic, p), relay.ErrInvalidTopic)
				},
				subscribe: func(topic string, h relay.Handler) error { return ignore(b.Subscribe(topic, h), relay.ErrInvalidTopic) },
			}
		}, nil},
	{"ignores the context", "Publish returns promptly with the context's error",
		func(b relay.Broker) relay.Broker {
			return &broken{Broker: b, publish: func(_ context.Context, topic string, p []byte) error {
				return b.Publish(context.Background(), topic, p)
			}}
		}, nil},
	{"delivers a delayed message at once", "a delayed message reaches every group once, none before its due time",
		func(b relay.Broker) relay.Broker {
			return &broken{Broker: b, publishAt: func(ctx context.Context, topic string, p []byte, _ time.Time) error {
				return b.Publish(ctx, topic, p)
			}}
		}, nil},
	{"does not log a failed settle", "a settle that fails is logged with the shared keys and the message stays pending",
		nil, func(cfg *pubsubtest.Config) {
			if cfg.Logger != nil {
				cfg.Logger = slog.New(belowError{cfg.Logger.Handler()})
			}
		}},
}

// belowError is a log handler that drops the records at Error and above.
type belowError struct{ slog.Handler }

func (h belowError) Enabled(ctx context.Context, l slog.Level) bool {
	return l < slog.LevelError && h.Handler.Enabled(ctx, l)
}

func (h belowError) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h belowError) WithAttrs(attrs []slog.Attr) slog.Handler {
	return belowError{h.Handler.WithAttrs(attrs)}
}

func (h belowError) WithGroup(name string) slog.Handler { return belowError{h.Handler.WithGroup(name)} }

// broken is a broker with some methods replaced. It implements
// relay.DelayedPublisher over a broker that does.
type broken struct {
	relay.Broker
	publish   func(ctx context.Context, topic string, payload []byte) error
	publishAt func(ctx context.Context, topic string, payload []byte, at time.Time) error
	subscribe func(topic string, h relay.Handler) error
	close     func() error
}

func (b *broken) PublishAt(ctx context.Context, topic string, payload []byte, at time.Time) error {
	if b.publishAt != nil {
		return b.publishAt(ctx, topic, payload, at)
	}
	return b.Broker.(relay.DelayedPublisher).PublishAt(ctx, topic, payload, at)
}

func (b *broken) Publish(ctx context.Context, topic string, payload []byte) error {
	if b.publish != nil {
		return b.publish(ctx, topic, payload)
	}
	return b.Broker.Publish(ctx, topic, payload)
}

func (b *broken) Subscribe(topic string, h relay.Handler) error {
	if b.subscribe != nil {
		return b.subscribe(topic, h)
	}
	return b.Broker.Subscribe(topic, h)
}

func (b *broken) Close() error {
	if b.close != nil {
		return b.close()
	}
	return b.Broker.Close()
}

func ignore(err, target error) error {
	if errors.Is(err, target) {
		return nil
	}
	return err
}

// childTimeout bounds a child process of TestSuiteFailsBrokenBrokers or
// TestSuiteFailsBrokenWatermill: a sub-test that hangs there (a defect the
// suite's own bounds miss) ends it with go test's goroutine dump, which the
// parent shows, instead of the default ten minutes. childKill is the
// parent's bound on a child that does not even end so.
const (
	childTimeout = 4 * time.Minute
	childKill    = childTimeout + 30*time.Second
)

// brokenEnv names, in a child process, the defect TestBrokenBroker injects.
const brokenEnv = "PUBSUBTEST_DEFECT"

// TestSuiteFailsBrokenBrokers shows that the suite can fail: for each defect
// it runs, in a child process of this test binary, the sub-test meant to catch
// it against a memory broker with the defect, and requires that sub-test to
// fail. (A Go test cannot expect its own sub-test to fail, hence the child.)
func TestSuiteFailsBrokenBrokers(t *testing.T) {
	if os.Getenv(brokenEnv) != "" {
		t.Skip("running as a child")
	}
	for _, d := range defects {
		t.Run(d.name, func(t *testing.T) {
			if d.subtest != "a failed delivery is redelivered after a backoff" {
				// Each waits out its sub-test's bounds in a child process;
				// the backoff defects are timed, so they run alone.
				t.Parallel()
			}
			sub := strings.ReplaceAll(d.subtest, " ", "_")
			ctx, cancel := context.WithTimeout(t.Context(), childKill)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0],
				"-test.run=^TestBrokenBroker$/^"+regexp.QuoteMeta(sub)+"$",
				"-test.count=1", "-test.short", "-test.v", "-test.timeout="+childTimeout.String())
			cmd.Env = append(os.Environ(), brokenEnv+"="+d.name)
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("the child process did not end within %v; output:\n%s", childKill, out)
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("the suite passed a broker that %s (err %v); output:\n%s", d.name, err, out)
			}
			if want := "--- FAIL: TestBrokenBroker/" + sub; !strings.Contains(string(out), want) {
				t.Errorf("child output lacks %q; output:\n%s", want, out)
			}
		})
	}
}

// TestBrokenBroker runs TestBroker on a memory broker with the defect named
// by $PUBSUBTEST_DEFECT; it is the child of TestSuiteFailsBrokenBrokers.
func TestBrokenBroker(t *testing.T) {
	name := os.Getenv(brokenEnv)
	if name == "" {
		t.Skip("runs only as a child of TestSuiteFailsBrokenBrokers")
	}
	i := slices.IndexFunc(defects, func(d defect) bool { return d.name == name })
	if i < 0 {
		t.Fatalf("unknown defect %q", name)
	}
	d := defects[i]
	h := memharness.New(t)
	newBroker := h.NewBroker
	h.NewBroker = func(t *testing.T, cfg pubsubtest.Config) (relay.Broker, error) {
		if d.config != nil {
			d.config(&cfg)
		}
		b, err := newBroker(t, cfg)
		if err != nil || d.wrap == nil {
			return b, err
		}
		return d.wrap(b), nil
	}
	pubsubtest.TestBroker(t, h)
}

// A wmDefect is a deliberate contract violation wrapped around a memory
// publisher or subscriber, and the TestWatermill sub-test that must catch it.
type wmDefect struct {
	name    string
	subtest string
	pub     func(p message.Publisher) message.Publisher   // nil leaves the publisher as it is
	sub     func(s message.Subscriber) message.Subscriber // nil leaves the subscriber as it is
	harness func(h *pubsubtest.Harness)                   // nil leaves the rest of the harness as it is
}

var wmDefects = []wmDefect{
	{"drops a message published during Close and returns nil", "Publisher.Publish and Subscriber.Subscribe racing Close lose nothing",
		func(p message.Publisher) message.Publisher {
			return &brokenPublisher{Publisher: p, publish: func(topic string, msgs ...*message.Message) error {
				return ignore(p.Publish(topic, msgs...), relay.ErrClosed)
			}}
		}, nil, nil},
	{"nacks at Close what its channel holds", "messages handed back by Subscriber.Close are redelivered to the group, not dead-lettered",
		nil, func(s message.Subscriber) message.Subscriber {
			return newForwarding(s, nil, true)
		}, nil},
	{"leaves a nacked message unsettled", "a router handler that calls runtime.Goexit is nacked and the subscription keeps consuming",
		nil, func(s message.Subscriber) message.Subscriber {
			return newForwarding(s, func(*message.Message) {}, false)
		}, nil},
	{"acks a nacked message", "a router handler's error whose Error method panics is dead-lettered without a crash",
		nil, func(s message.Subscriber) message.Subscriber {
			return newForwarding(s, func(m *message.Message) { m.Ack() }, false)
		}, nil},
	{"drops _watermill_delayed_until", "a message with _watermill_delayed_until reaches every group once, none before its due time",
		func(p message.Publisher) message.Publisher {
			return &brokenPublisher{Publisher: p, publish: func(topic string, msgs ...*message.Message) error {
				for _, m := range msgs {
					delete(m.Metadata, relay.MetadataDelayedUntil)
				}
				return p.Publish(topic, msgs...)
			}}
		}, nil, nil},
	{"publishes a batch one message at a time", "a batch with one malformed _watermill_delayed_until is refused whole and none of it is stored",
		func(p message.Publisher) message.Publisher {
			return &brokenPublisher{Publisher: p, publish: func(topic string, msgs ...*message.Message) error {
				for _, m := range msgs {
					if err := p.Publish(topic, m); err != nil {
						return err
					}
				}
				return nil
			}}
		}, nil, nil},
	{"stores a due time beyond the maximum at once", "a _watermill_delayed_until beyond the maximum is rejected with ErrInvalidDelay and nothing is stored",
		func(p message.Publisher) message.Publisher {
			return &brokenPublisher{Publisher: p, publish: func(topic string, msgs ...*message.Message) error {
				for _, m := range msgs {
					at, err := time.Parse(time.RFC3339Nano, m.Metadata.Get(relay.MetadataDelayedUntil))
					if err == nil && (at.IsZero() || time.Until(at) > relay.DefaultMaxDelay) {
						delete(m.Metadata, relay.MetadataDelayedUntil)
					}
				}
				return p.Publish(topic, msgs...)
			}}
		}, nil, nil},
	{"drops _watermill_delayed_until in a batch of several", "10,000 messages with one _watermill_delayed_until are all delivered, none early (time logged)",
		func(p message.Publisher) message.Publisher {
			return &brokenPublisher{Publisher: p, publish: func(topic string, msgs ...*message.Message) error {
				for i, m := range msgs {
					if i < len(msgs)-1 { // the batch path forgets all but the last
						delete(m.Metadata, relay.MetadataDelayedUntil)
					}
				}
				return p.Publish(topic, msgs...)
			}}
		}, nil, nil},
	clientDelay(),
	{"words errors its own way", "errors of Publish and Subscribe name the backend, the operation and the topic",
		func(p message.Publisher) message.Publisher {
			return &brokenPublisher{Publisher: p, publish: func(topic string, msgs ...*message.Message) error {
				if err := p.Publish(topic, msgs...); err != nil {
					return fmt.Errorf("could not publish to %s: %w", topic, err) // errors.Is still matches
				}
				return nil
			}}
		}, func(s message.Subscriber) message.Subscriber {
			return &brokenSubscriber{Subscriber: s, subscribe: func(ctx context.Context, topic string) (<-chan *message.Message, error) {
				ch, err := s.Subscribe(ctx, topic)
				if err != nil {
					return nil, fmt.Errorf("subscribe failed: %w", err)
				}
				return ch, nil
			}}
		}, nil},
}

// clientDelay is the defect of a publisher that holds a delayed message in
// a timer of its own process and publishes it when due: nothing is stored
// before the due time, so a restart loses it. The memory hub has no server
// to restart; the harness's Restart stands for a restart of the process,
// stopping the timers, and what the hub stored survives it, as a
// persistent server's store would.
func clientDelay() wmDefect {
	var (
		mu     sync.Mutex
		timers []*time.Timer
	)
	return wmDefect{"delays in the client and loses the messages at a restart",
		"messages with _watermill_delayed_until published before a restart are delivered after it",
		func(p message.Publisher) message.Publisher {
			return &brokenPublisher{Publisher: p, publish: func(topic string, msgs ...*message.Message) error {
				for _, m := range msgs {
					at, err := time.Parse(time.RFC3339Nano, m.Metadata.Get(relay.MetadataDelayedUntil))
					if err != nil {
						if err := p.Publish(topic, m); err != nil {
							return err
						}
						continue
					}
					delete(m.Metadata, relay.MetadataDelayedUntil)
					mu.Lock()
					timers = append(timers, time.AfterFunc(time.Until(at), func() { _ = p.Publish(topic, m) }))
					mu.Unlock()
				}
				return nil
			}}
		}, nil,
		func(h *pubsubtest.Harness) {
			h.Capabilities.Persistent = true
			h.Restart = func(*testing.T) {
				mu.Lock()
				defer mu.Unlock()
				for _, tm := range timers {
					tm.Stop()
				}
			}
		}}
}

// brokenSubscriber is a subscriber with Subscribe replaced.
type brokenSubscriber struct {
	message.Subscriber
	subscribe func(ctx context.Context, topic string) (<-chan *message.Message, error)
}

func (s *brokenSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return s.subscribe(ctx, topic)
}

// brokenPublisher is a publisher with Publish replaced.
type brokenPublisher struct {
	message.Publisher
	publish func(topic string, msgs ...*message.Message) error
}

func (p *brokenPublisher) Publish(topic string, msgs ...*message.Message) error {
	return p.publish(topic, msgs...)
}

// forwarding is a subscriber that hands out copies of its backend's messages
// and settles the backend's message when the copy is settled: an Ack is passed
// on, a Nack is what nack does (nil passes it on). With nackAtClose its Close
// first nacks every message it took from the backend whose copy is not acked.
type forwarding struct {
	message.Subscriber
	nack        func(m *message.Message)
	nackAtClose bool

	mu      sync.Mutex
	taken   [][2]*message.Message // the backend's message and the copy handed out
	closing chan struct{}
	once    sync.Once
}

func newForwarding(s message.Subscriber, nack func(*message.Message), nackAtClose bool) *forwarding {
	if nack == nil {
		nack = func(m *message.Message) { m.Nack() }
	}
	return &forwarding{Subscriber: s, nack: nack, nackAtClose: nackAtClose, closing: make(chan struct{})}
}

func (f *forwarding) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	in, err := f.Subscriber.Subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	go func() {
		defer close(out)
		for m := range in {
			c := m.Copy()
			c.SetContext(m.Context())
			f.mu.Lock()
			f.taken = append(f.taken, [2]*message.Message{m, c})
			f.mu.Unlock()
			go func() {
				select {
				case <-c.Acked():
					m.Ack()
				case <-c.Nacked():
					for k, v := range c.Metadata { // what relay.NackReason recorded
						m.Metadata.Set(k, v)
					}
					f.nack(m)
				case <-m.Context().Done():
				}
			}()
			select {
			case out <- c:
			case <-f.closing:
			}
		}
	}()
	return out, nil
}

func (f *forwarding) Close() error {
	f.once.Do(func() { close(f.closing) })
	if f.nackAtClose {
		f.mu.Lock()
		for _, mc := range f.taken {
			select {
			case <-mc[1].Acked():
			default:
				mc[0].Nack() // a no-op for a message settled already
			}
		}
		f.mu.Unlock()
	}
	return f.Subscriber.Close()
}

// wmBrokenEnv names, in a child process, the defect TestBrokenWatermill
// injects.
const wmBrokenEnv = "PUBSUBTEST_WM_DEFECT"

// TestSuiteFailsBrokenWatermill is [TestSuiteFailsBrokenBrokers] for the
// Watermill face: each of wmDefects must fail its sub-test of TestWatermill.
func TestSuiteFailsBrokenWatermill(t *testing.T) {
	if os.Getenv(wmBrokenEnv) != "" {
		t.Skip("running as a child")
	}
	for _, d := range wmDefects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel() // each waits out its sub-test's bounds in a child process
			sub := strings.ReplaceAll(d.subtest, " ", "_")
			ctx, cancel := context.WithTimeout(t.Context(), childKill)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0],
				"-test.run=^TestBrokenWatermill$/^"+regexp.QuoteMeta(sub)+"$",
				"-test.count=1", "-test.short", "-test.v", "-test.timeout="+childTimeout.String())
			cmd.Env = append(os.Environ(), wmBrokenEnv+"="+d.name)
			out, err := cmd.CombinedOutput()
			require.NoError(t, ctx.Err(), "the child process did not end within %v; output:\n%s", childKill, out)
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "the suite passed a Watermill face that %s; output:\n%s", d.name, out)
			assert.Contains(t, string(out), "--- FAIL: TestBrokenWatermill/"+sub, "the child's output names another failure")
		})
	}
}

// TestBrokenWatermill runs TestWatermill on a memory publisher and subscriber
// with the defect named by $PUBSUBTEST_WM_DEFECT; it is the child of
// TestSuiteFailsBrokenWatermill.
func TestBrokenWatermill(t *testing.T) {
	name := os.Getenv(wmBrokenEnv)
	if name == "" {
		t.Skip("runs only as a child of TestSuiteFailsBrokenWatermill")
	}
	i := slices.IndexFunc(wmDefects, func(d wmDefect) bool { return d.name == name })
	require.GreaterOrEqual(t, i, 0, "unknown defect %q", name)
	d := wmDefects[i]
	h := memharness.New(t)
	if d.harness != nil {
		d.harness(&h)
	}
	if newPublisher := h.NewPublisher; d.pub != nil {
		h.NewPublisher = func(t *testing.T, cfg pubsubtest.Config) (message.Publisher, error) {
			p, err := newPublisher(t, cfg)
			if err != nil {
				return nil, err
			}
			return d.pub(p), nil
		}
	}
	if newSubscriber := h.NewSubscriber; d.sub != nil {
		h.NewSubscriber = func(t *testing.T, cfg pubsubtest.Config) (message.Subscriber, error) {
			s, err := newSubscriber(t, cfg)
			if err != nil {
				return nil, err
			}
			return d.sub(s), nil
		}
	}
	pubsubtest.TestWatermill(t, h)
}
