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

// The conformance suite on a 3-node JetStream cluster with R3 streams and
// consumers (issue #15). The fault cases are in cluster_faults_test.go.

// clusterReplicas is the replica count of every stream and consumer the
// cluster tests make: one node may be lost without losing a quorum.
const clusterReplicas = 3

// clusters hands out embedded clusters like servers hands out servers: a
// test shares the cluster of its closest ancestor that has one, or starts
// its own, shut down with the test.
type clusters struct {
	mu     sync.Mutex
	byTest map[string]*natstest.Cluster
}

func newClusters() *clusters { return &clusters{byTest: make(map[string]*natstest.Cluster)} }

func (cs *clusters) start(t *testing.T) *natstest.Cluster {
	t.Helper()
	c := natstest.StartCluster(t, 3)
	name := t.Name()
	cs.mu.Lock()
	cs.byTest[name] = c
	cs.mu.Unlock()
	t.Cleanup(func() {
		cs.mu.Lock()
		delete(cs.byTest, name)
		cs.mu.Unlock()
	})
	return c
}

func (cs *clusters) of(t *testing.T) *natstest.Cluster {
	t.Helper()
	cs.mu.Lock()
	for name := t.Name(); ; {
		if c, ok := cs.byTest[name]; ok {
			cs.mu.Unlock()
			return c
		}
		i := strings.LastIndexByte(name, '/')
		if i < 0 {
			break
		}
		name = name[:i]
	}
	cs.mu.Unlock()
	return cs.start(t)
}

// jetStream returns a JetStream context on a new connection to every node of
// t's cluster, closed at the end of t.
func (cs *clusters) jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(natstest.ConnectCluster(t, cs.of(t)))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// replicated makes relay create R3 streams and consumers.
func replicated() []natsjs.Option {
	return []natsjs.Option{
		natsjs.WithStreamConfig(func(c *jetstream.StreamConfig) { c.Replicas = clusterReplicas }),
		natsjs.WithConsumerConfig(func(c *jetstream.ConsumerConfig) { c.Replicas = clusterReplicas }),
	}
}

func clusterHarness(cs *clusters) pubsubtest.Harness {
	opts := func(cfg pubsubtest.Config) []natsjs.Option { return append(options(cfg), replicated()...) }
	return pubsubtest.Harness{
		NewBroker: func(t *testing.T, cfg pubsubtest.Config) (relay.Broker, error) {
			return natsjs.NewBroker(cs.jetStream(t), opts(cfg)...)
		},
		NewPublisher: func(t *testing.T, cfg pubsubtest.Config) (message.Publisher, error) {
			return natsjs.NewPublisher(cs.jetStream(t), opts(cfg)...)
		},
		NewSubscriber: func(t *testing.T, cfg pubsubtest.Config) (message.Subscriber, error) {
			return natsjs.NewSubscriber(cs.jetStream(t), opts(cfg)...)
		},
		NewInspector: func(t *testing.T) relay.Inspector {
			in, err := natsjs.NewInspector(cs.jetStream(t))
			if err != nil {
				t.Fatal(err)
			}
			return in
		},
		// A rolling restart, one node after the other, as an operator
		// upgrades a cluster: the brokers stay open throughout.
		Restart: func(t *testing.T) {
			t.Helper()
			c := cs.of(t)
			for i := range c.Size() {
				c.StopNode(i)
				if err := c.StartNode(i); err != nil {
					t.Fatal(err)
				}
			}
		},
		Capabilities: pubsubtest.Capabilities{
			Persistent: true,
			Ordered:    true,
			MaxPayload: 1 << 20,
			Delayed:    true, // JetStream message schedules, replicated like the stream
			RetryAfter: true,
		},
	}
}

func TestClusterBroker(t *testing.T) {
	pubsubtest.TestBroker(t, clusterHarness(newClusters()))
}

func TestClusterWatermill(t *testing.T) {
	cs := newClusters()
	cs.start(t)
	pubsubtest.TestWatermill(t, clusterHarness(cs))
}
