package natsjs_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
	"github.com/go-relay/relay/pubsubtest"
)

// perTest hands out a server (or cluster) per test: a test shares the one of
// its closest ancestor test that has one, or starts its own with start, shut
// down with the test. TestConformanceBroker's sub-tests thus each get a server
// of their own, so that the goroutines of the streams one sub-test creates on
// the server are gone (with the server) when its leak check runs;
// TestConformanceWatermill starts one server for all of Watermill's parallel
// sub-tests.
type perTest[S any] struct {
	start  func(t *testing.T) S
	mu     sync.Mutex
	byTest map[string]S
}

func newPerTest[S any](start func(t *testing.T) S) *perTest[S] {
	return &perTest[S]{start: start, byTest: make(map[string]S)}
}

// startFor starts t's own server.
func (p *perTest[S]) startFor(t *testing.T) S {
	t.Helper()
	s := p.start(t)
	name := t.Name()
	p.mu.Lock()
	p.byTest[name] = s
	p.mu.Unlock()
	t.Cleanup(func() {
		p.mu.Lock()
		delete(p.byTest, name)
		p.mu.Unlock()
	})
	return s
}

// of returns the server of t's closest ancestor (or t), starting one for t if
// there is none.
func (p *perTest[S]) of(t *testing.T) S {
	t.Helper()
	p.mu.Lock()
	for name := t.Name(); ; {
		if s, ok := p.byTest[name]; ok {
			p.mu.Unlock()
			return s
		}
		i := strings.LastIndexByte(name, '/')
		if i < 0 {
			break
		}
		name = name[:i]
	}
	p.mu.Unlock()
	return p.startFor(t)
}

// servers hands out embedded servers.
type servers = perTest[*natstest.Server]

func newServers() *servers {
	return newPerTest(func(t *testing.T) *natstest.Server { return natstest.Start(t) })
}

// jetStream returns a JetStream context on a new connection to t's server,
// closed at the end of t, so that every broker has its own connection like
// separate processes would.
func jetStreamOf(ss *servers) func(t *testing.T) jetstream.JetStream {
	return func(t *testing.T) jetstream.JetStream {
		t.Helper()
		js, err := jetstream.New(natstest.Connect(t, ss.of(t)))
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
}

func options(cfg pubsubtest.Config) []natsjs.Option {
	opts := []natsjs.Option{
		natsjs.WithGroup(cfg.Group),
		natsjs.WithMaxDeliver(cfg.MaxDeliver),
		natsjs.WithBackoff(cfg.MinBackoff, cfg.MaxBackoff),
		natsjs.WithConcurrency(cfg.Concurrency),
		natsjs.WithAckWait(cfg.AckWait),
	}
	if cfg.Logger != nil {
		opts = append(opts, natsjs.WithLogger(cfg.Logger))
	}
	if cfg.DeadLetterTopic != nil {
		opts = append(opts, natsjs.WithDeadLetterTopic(cfg.DeadLetterTopic))
	}
	if cfg.TracerProvider != nil {
		opts = append(opts, natsjs.WithTracerProvider(cfg.TracerProvider))
	}
	if cfg.MeterProvider != nil {
		opts = append(opts, natsjs.WithMeterProvider(cfg.MeterProvider))
	}
	if cfg.Propagators != nil {
		opts = append(opts, natsjs.WithPropagators(cfg.Propagators))
	}
	return opts
}

// suiteTopics are the beginnings of the topics the suite makes up
// (pubsubtest.NewTopic, Watermill's GenerateTopicFunc).
var suiteTopics = []string{"relay_test_", "relay_wm_"}

func harness(t *testing.T, ss *servers) pubsubtest.Harness {
	natstest.RemoveNewStreams(t, suiteTopics...)
	// The suite's over-limit case sends max_payload plus one byte: the
	// server's own, which an external one may have changed from the
	// default.
	maxPayload := int64(1 << 20) // the embedded server's default
	schedules := true            // the embedded server is v2.15.2
	if natstest.External() {
		nc := natstest.Connect(t, natstest.Start(t))
		maxPayload = nc.MaxPayload()
		schedules = natstest.ServerAtLeast(nc, "2.12.0")
	}
	h := suiteHarness(jetStreamOf(ss), options, pubsubtest.Capabilities{
		Persistent: true,
		Ordered:    true,
		MaxPayload: int(maxPayload),
		// JetStream message schedules: nats-server 2.12 and newer.
		Delayed:    schedules,
		RetryAfter: true,
		Telemetry:  true,
	})
	// Watermill's own TestReconnect needs a restart command and skips;
	// TestConformanceBroker's restart sub-tests cover reconnection through this.
	h.Restart = func(t *testing.T) {
		t.Helper()
		natstest.RequireControl(t)
		if err := ss.of(t).Restart(); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// suiteHarness is the harness of the suite on the JetStream contexts js
// returns, with the options opts makes of the suite's Config, without
// Restart.
func suiteHarness(js func(t *testing.T) jetstream.JetStream, opts func(pubsubtest.Config) []natsjs.Option,
	caps pubsubtest.Capabilities) pubsubtest.Harness {
	return pubsubtest.Harness{
		NewBroker: func(t *testing.T, cfg pubsubtest.Config) (relay.Broker, error) {
			return natsjs.NewBroker(js(t), opts(cfg)...)
		},
		NewPublisher: func(t *testing.T, cfg pubsubtest.Config) (message.Publisher, error) {
			return natsjs.NewPublisher(js(t), opts(cfg)...)
		},
		NewSubscriber: func(t *testing.T, cfg pubsubtest.Config) (message.Subscriber, error) {
			return natsjs.NewSubscriber(js(t), opts(cfg)...)
		},
		NewInspector: func(t *testing.T) relay.Inspector {
			in, err := natsjs.NewInspector(js(t))
			if err != nil {
				t.Fatal(err)
			}
			return in
		},
		Capabilities: caps,
	}
}

func TestConformanceBroker(t *testing.T) {
	pubsubtest.TestBroker(t, harness(t, newServers()))
}

func TestConformanceWatermill(t *testing.T) {
	ss := newServers()
	ss.startFor(t)
	pubsubtest.TestWatermill(t, harness(t, ss))
}

func TestConformanceInspector(t *testing.T) {
	pubsubtest.TestInspector(t, harness(t, newServers()))
}

func TestConformanceTelemetry(t *testing.T) {
	ss := newServers()
	ss.startFor(t)
	pubsubtest.TestTelemetry(t, harness(t, ss))
}
