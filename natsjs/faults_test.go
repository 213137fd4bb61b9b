package natsjs_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/faulttest"
	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
	"github.com/go-relay/relay/pubsubtest"
)

// The fault matrix of internal/testkit/faulttest on an embedded NATS server with a
// file store. Budgets are in each Run function's doc; RELAY_FAULTS=full runs
// the full counts.

// faultBroker connects to the server at addr (or a proxy in front of it)
// with a client that reconnects forever, every 100 ms, like
// natstest.Connect.
func faultBroker(t testing.TB, addr string, cfg pubsubtest.Config) (relay.Broker, error) {
	nc, err := nats.Connect("nats://"+addr,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.IgnoreDiscoveredServers(),
	)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return natsjs.NewBroker(js,
		natsjs.WithGroup(cfg.Group),
		natsjs.WithMaxDeliver(cfg.MaxDeliver),
		natsjs.WithBackoff(cfg.MinBackoff, cfg.MaxBackoff),
		natsjs.WithConcurrency(cfg.Concurrency),
		natsjs.WithAckWait(cfg.AckWait),
		natsjs.WithLogger(faulttest.Logger()),
	)
}

// faultServer is an embedded server as faulttest controls it.
type faultServer struct{ s *natstest.Server }

func (f faultServer) Addr() string { return strings.TrimPrefix(f.s.URL(), "nats://") }
func (f faultServer) Stop() error  { f.s.Stop(); return nil }
func (f faultServer) Start() error { return f.s.Start() }

func faultBackend(t *testing.T) faulttest.Backend {
	return faulttest.Backend{
		Name:      "natsjs",
		Server:    faultServer{natstest.Start(t)},
		NewBroker: faultBroker,
		Helper:    true,
		Topic:     natstest.Topic,
	}
}

func TestFaultHelperProcess(t *testing.T) { faulttest.HelperProcess(t, faultBroker) }

func TestFaultHandlerFailures(t *testing.T) { faulttest.RunHandlerFailures(t, faultBackend(t)) }
func TestFaultConsumerCrash(t *testing.T)   { faulttest.RunConsumerCrash(t, faultBackend(t)) }

// A delayed message outlives the process that scheduled it: JetStream keeps
// the schedule and fires it, whatever happened to the publisher.
func TestFaultDelayedPublisherCrash(t *testing.T) {
	b := faultBackend(t)
	nc := natstest.Connect(t, b.Server.(faultServer).s)
	natstest.RequireServerAtLeast(t, nc, "2.12.0", "message schedules came in nats-server 2.12")
	faulttest.RunDelayedPublisherCrash(t, b)
}
func TestFaultBrokerRestart(t *testing.T) {
	natstest.RequireControl(t)
	faulttest.RunBrokerRestart(t, faultBackend(t))
}
func TestFaultNetworkCut(t *testing.T)       { faulttest.RunNetworkCut(t, faultBackend(t)) }
func TestFaultNetworkLatency(t *testing.T)   { faulttest.RunNetworkLatency(t, faultBackend(t)) }
func TestFaultNetworkBlackHole(t *testing.T) { faulttest.RunNetworkBlackHole(t, faultBackend(t)) }
func TestFaultGracefulShutdown(t *testing.T) { faulttest.RunGracefulShutdown(t, faultBackend(t)) }

// Close Naks what it fetched and did not handle (see the package doc), so
// the group gets it at once, not after the ack wait.
func TestFaultCloseReturnsUnhandled(t *testing.T) {
	faulttest.RunCloseReturnsUnhandled(t, faultBackend(t))
}
