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

// servers hands out embedded NATS servers to the conformance suite: a test
// shares the server of its closest ancestor test that has one, or starts its
// own, shut down with the test. TestConformanceBroker's sub-tests thus each get a server
// of their own, so that the goroutines of the streams one sub-test creates on
// the server are gone (with the server) when its leak check runs; TestConformanceWatermill
// starts one server for all of Watermill's parallel sub-tests.
type servers struct {
	mu     sync.Mutex
	byTest map[string]*natstest.Server
}

func (ss *servers) start(t *testing.T) *natstest.Server {
	t.Helper()
	s := natstest.Start(t)
	name := t.Name()
	ss.mu.Lock()
	ss.byTest[name] = s
	ss.mu.Unlock()
	t.Cleanup(func() {
		ss.mu.Lock()
		delete(ss.byTest, name)
		ss.mu.Unlock()
	})
	return s
}

// of returns the server of t's closest ancestor (or t), starting one for t if
// there is none.
func (ss *servers) of(t *testing.T) *natstest.Server {
	t.Helper()
	ss.mu.Lock()
	for name := t.Name(); ; {
		if s, ok := ss.byTest[name]; ok {
			ss.mu.Unlock()
			return s
		}
		i := strings.LastIndexByte(name, '/')
		if i < 0 {
			break
		}
		name = name[:i]
	}
	ss.mu.Unlock()
	return ss.start(t)
}

// jetStream returns a JetStream context on a new connection to t's server,
// closed at the end of t, so that every broker has its own connection like
// separate processes would.
func (ss *servers) jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, ss.of(t)))
	if err != nil {
		t.Fatal(err)
	}
	return js
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
	return pubsubtest.Harness{
		NewBroker: func(t *testing.T, cfg pubsubtest.Config) (relay.Broker, error) {
			return natsjs.NewBroker(ss.jetStream(t), options(cfg)...)
		},
		NewPublisher: func(t *testing.T, cfg pubsubtest.Config) (message.Publisher, error) {
			return natsjs.NewPublisher(ss.jetStream(t), options(cfg)...)
		},
		NewSubscriber: func(t *testing.T, cfg pubsubtest.Config) (message.Subscriber, error) {
			return natsjs.NewSubscriber(ss.jetStream(t), options(cfg)...)
		},
		NewInspector: func(t *testing.T) relay.Inspector {
			in, err := natsjs.NewInspector(ss.jetStream(t))
			if err != nil {
				t.Fatal(err)
			}
			return in
		},
		// Watermill's own TestReconnect needs a restart command and skips;
		// TestConformanceBroker's restart sub-tests cover reconnection through this.
		Restart: func(t *testing.T) {
			t.Helper()
			natstest.RequireControl(t)
			if err := ss.of(t).Restart(); err != nil {
				t.Fatal(err)
			}
		},
		Capabilities: pubsubtest.Capabilities{
			Persistent: true,
			Ordered:    true,
			MaxPayload: int(maxPayload),
			// JetStream message schedules: nats-server 2.12 and newer.
			Delayed:    schedules,
			RetryAfter: true,
			Telemetry:  true,
		},
	}
}

func TestConformanceBroker(t *testing.T) {
	pubsubtest.TestBroker(t, harness(t, &servers{byTest: make(map[string]*natstest.Server)}))
}

func TestConformanceWatermill(t *testing.T) {
	ss := &servers{byTest: make(map[string]*natstest.Server)}
	ss.start(t)
	pubsubtest.TestWatermill(t, harness(t, ss))
}

func TestConformanceInspector(t *testing.T) {
	pubsubtest.TestInspector(t, harness(t, &servers{byTest: make(map[string]*natstest.Server)}))
}

func TestConformanceTelemetry(t *testing.T) {
	ss := &servers{byTest: make(map[string]*natstest.Server)}
	ss.start(t)
	pubsubtest.TestTelemetry(t, harness(t, ss))
}
