package pubsubtest_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/memharness"
	"github.com/go-relay/relay/pubsubtest"
)

// The suite's proof that it passes on a conforming backend is memory's own
// conformance test (memory/conformance_test.go), on the same harness as the
// defects below; running it here too would only run it twice.

// A defect is a deliberate contract violation wrapped around a memory broker,
// and the TestBroker sub-test that must catch it.
type defect struct {
	name    string
	subtest string
	wrap    func(b relay.Broker) relay.Broker
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
		}},
	{"appends a byte to every payload", "payloads round-trip byte for byte",
		func(b relay.Broker) relay.Broker {
			return &broken{Broker: b, publish: func(ctx context.Context, topic string, p []byte) error {
				return b.Publish(ctx, topic, append(bytes.Clone(p), 0))
			}}
		}},
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
		}},
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
		}},
	{"returns from Close before handlers finish", "Close waits for running handlers to return",
		func(b relay.Broker) relay.Broker {
			return &broken{Broker: b, close: func() error {
				go b.Close()
				return nil
			}}
		}},
	{"swallows ErrClosed", "Publish and Subscribe return ErrClosed after Close",
		func(b relay.Broker) relay.Broker {
			return &broken{Broker: b,
				publish: func(ctx context.Context, topic string, p []byte) error {
					return ignore(b.Publish(ctx, topic, p), relay.ErrClosed)
				},
				subscribe: func(topic string, h relay.Handler) error { return ignore(b.Subscribe(topic, h), relay.ErrClosed) },
			}
		}},
	{"leaks a goroutine per subscription", "Close leaves no goroutine behind",
		func(b relay.Broker) relay.Broker {
			never := make(chan struct{})
			return &broken{Broker: b, subscribe: func(topic string, h relay.Handler) error {
				go func() { <-never }()
				return b.Subscribe(topic, h)
			}}
		}},
	{"accepts invalid topics", "an invalid topic is rejected by Publish and Subscribe",
		func(b relay.Broker) relay.Broker {
			return &broken{Broker: b,
				publish: func(ctx context.Context, topic string, p []byte) error {
					return ignore(b.Publish(ctx, topic, p), relay.ErrInvalidTopic)
				},
				subscribe: func(topic string, h relay.Handler) error { return ignore(b.Subscribe(topic, h), relay.ErrInvalidTopic) },
			}
		}},
	{"ignores the context", "Publish returns promptly with the context's error",
		func(b relay.Broker) relay.Broker {
			return &broken{Broker: b, publish: func(_ context.Context, topic string, p []byte) error {
				return b.Publish(context.Background(), topic, p)
			}}
		}},
}

// broken is a broker with some methods replaced.
type broken struct {
	relay.Broker
	publish   func(ctx context.Context, topic string, payload []byte) error
	subscribe func(topic string, h relay.Handler) error
	close     func() error
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
			sub := strings.ReplaceAll(d.subtest, " ", "_")
			cmd := exec.CommandContext(t.Context(), os.Args[0],
				"-test.run=^TestBrokenBroker$/^"+regexp.QuoteMeta(sub)+"$",
				"-test.count=1", "-test.short", "-test.v")
			cmd.Env = append(os.Environ(), brokenEnv+"="+d.name)
			out, err := cmd.CombinedOutput()
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
	h := memharness.New(t)
	newBroker := h.NewBroker
	h.NewBroker = func(t *testing.T, cfg pubsubtest.Config) (relay.Broker, error) {
		b, err := newBroker(t, cfg)
		if err != nil {
			return nil, err
		}
		return defects[i].wrap(b), nil
	}
	pubsubtest.TestBroker(t, h)
}
