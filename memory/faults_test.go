package memory_test

import (
	"testing"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/faulttest"
	"github.com/go-relay/relay/memory"
	"github.com/go-relay/relay/pubsubtest"
)

// The cases of internal/testkit/faulttest's fault matrix that apply in memory:
// handler failures and a graceful shutdown under load. There is no server
// to restart or cut off, and no consumer in another process (a hub lives in
// one process), so the crash, restart and network cases do not apply.

// faultBackend returns the memory backend on a hub of its own for t.
func faultBackend(t *testing.T) faulttest.Backend {
	hub, err := memory.NewHub()
	if err != nil {
		t.Fatal(err)
	}
	return faulttest.Backend{
		Name: "memory",
		NewBroker: func(_ testing.TB, _ string, cfg pubsubtest.Config) (relay.Broker, error) {
			return memory.NewBroker(memory.WithHub(hub),
				memory.WithGroup(cfg.Group),
				memory.WithMaxDeliver(cfg.MaxDeliver),
				memory.WithBackoff(cfg.MinBackoff, cfg.MaxBackoff),
				memory.WithConcurrency(cfg.Concurrency),
				memory.WithLogger(faulttest.Logger()),
			)
		},
	}
}

func TestFaultHandlerFailures(t *testing.T)  { faulttest.RunHandlerFailures(t, faultBackend(t)) }
func TestFaultGracefulShutdown(t *testing.T) { faulttest.RunGracefulShutdown(t, faultBackend(t)) }

// Close leaves the messages it took and did not handle on the hub, for the
// group at once.
func TestFaultCloseReturnsUnhandled(t *testing.T) {
	faulttest.RunCloseReturnsUnhandled(t, faultBackend(t))
}
