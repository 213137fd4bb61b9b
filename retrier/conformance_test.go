package retrier_test

import (
	"log/slog"
	"testing"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/memory"
	"github.com/go-relay/relay/pubsubtest"
	"github.com/go-relay/relay/retrier"
)

// TestConformanceBroker runs the conformance suite on a memory broker that does not
// retry by itself (WithNativeRetries(false)) behind the retrier: attempts,
// backoff and dead letters must then come from the retrier and match the native
// backends'.
func TestConformanceBroker(t *testing.T) {
	hub, err := memory.NewHub()
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.TestBroker(t, pubsubtest.Harness{
		NewBroker: func(t *testing.T, cfg pubsubtest.Config) (relay.Broker, error) {
			inner, err := memory.NewBroker(
				memory.WithHub(hub),
				memory.WithGroup(cfg.Group),
				memory.WithNativeRetries(false),
				memory.WithConcurrency(cfg.Concurrency),
				memory.WithBackoff(cfg.MinBackoff, cfg.MaxBackoff),
			)
			if err != nil {
				return nil, err
			}
			opts := []retrier.Option{
				retrier.WithMaxDeliver(cfg.MaxDeliver),
				retrier.WithBackoff(cfg.MinBackoff, cfg.MaxBackoff),
				// The suite's handlers fail and panic on purpose: show the
				// retrier's log only with -v or on failure. cfg.Logger is
				// not passed on: the retrier's records do not carry the
				// shared schema's keys yet (no id, no group).
				retrier.WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil))),
			}
			if cfg.DeadLetterTopic != nil {
				opts = append(opts, retrier.WithDeadLetterTopic(cfg.DeadLetterTopic))
			}
			b, err := retrier.New(inner, opts...)
			if err != nil {
				_ = inner.Close()
				return nil, err
			}
			return b, nil
		},
		// In-process only: nothing survives the process, so not Persistent.
		// Retries run in place, so one subscription with concurrency 1 keeps
		// publish order.
		Capabilities: pubsubtest.Capabilities{Ordered: true, RetryAfter: true, Delayed: true},
	})
}
