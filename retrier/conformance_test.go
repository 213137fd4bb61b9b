package retrier_test

import (
	"log/slog"
	"testing"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/memory"
	"github.com/go-relay/relay/pubsubtest"
	"github.com/go-relay/relay/retrier"
)

// TestConformance runs the conformance suite on a memory broker that does not
// retry by itself (WithNativeRetries(false)) behind the retrier: attempts,
// backoff and dead letters must then come from the retrier and match the native
// backends'.
func TestConformance(t *testing.T) {
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
			b, err := retrier.New(inner,
				retrier.WithMaxDeliver(cfg.MaxDeliver),
				retrier.WithBackoff(cfg.MinBackoff, cfg.MaxBackoff),
				// The suite's handlers fail and panic on purpose: show the
				// retrier's log only with -v or on failure.
				retrier.WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil))),
			)
			if err != nil {
				_ = inner.Close()
				return nil, err
			}
			return b, nil
		},
		// In-process only: nothing survives the process, so not Persistent.
		// Retries run in place, so one subscription with concurrency 1 keeps
		// publish order.
		Capabilities: pubsubtest.Capabilities{Ordered: true, RetryAfter: true},
	})
}
