package natsjs_test

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
	"github.com/go-relay/relay/pubsubtest"
)

// The conformance suite on a 3-node JetStream cluster with R3 streams and
// consumers (issue #15). The fault cases are in cluster_faults_test.go.

// clusterReplicas is the replica count of every stream and consumer the
// cluster tests make: one node may be lost without losing a quorum.
const clusterReplicas = 3

// clusters hands out embedded clusters as servers hands out servers.
type clusters = perTest[*natstest.Cluster]

func newClusters() *clusters {
	return newPerTest(func(t *testing.T) *natstest.Cluster { return natstest.StartCluster(t, 3) })
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
	js := func(t *testing.T) jetstream.JetStream {
		t.Helper()
		js, err := jetstream.New(natstest.ConnectCluster(t, cs.of(t)))
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	h := suiteHarness(js, opts, pubsubtest.Capabilities{
		Persistent: true,
		Ordered:    true,
		MaxPayload: 1 << 20,
		Delayed:    true, // JetStream message schedules, replicated like the stream
		RetryAfter: true,
	})
	// A rolling restart, one node after the other, as an operator upgrades
	// a cluster: the brokers stay open throughout.
	h.Restart = func(t *testing.T) {
		t.Helper()
		c := cs.of(t)
		for i := range c.Size() {
			c.StopNode(i)
			if err := c.StartNode(i); err != nil {
				t.Fatal(err)
			}
		}
	}
	return h
}

func TestClusterBroker(t *testing.T) {
	pubsubtest.TestBroker(t, clusterHarness(newClusters()))
}

func TestClusterWatermill(t *testing.T) {
	cs := newClusters()
	cs.startFor(t)
	pubsubtest.TestWatermill(t, clusterHarness(cs))
}
