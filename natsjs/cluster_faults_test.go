package natsjs_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/faulttest"
	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
	"github.com/go-relay/relay/pubsubtest"
)

// The failover cases of internal/testkit/faulttest on a 3-node cluster with R3
// streams and consumers: the stream leader is shut down during publish and
// during consume, and started again. RELAY_FAULTS=full runs the full counts.

// leaderLoss takes down the leader of a topic's stream.
type leaderLoss struct {
	c    *natstest.Cluster
	down int
}

func (f *leaderLoss) Fail(topic string) error {
	i := f.c.WaitStreamLeader(natsjs.StreamName(topic), 10*time.Second)
	if i < 0 {
		return fmt.Errorf("no leader of stream %q", natsjs.StreamName(topic))
	}
	f.c.StopNode(i)
	f.down = i
	return nil
}

func (f *leaderLoss) Recover() error { return f.c.StartNode(f.down) }

func clusterFaultBackend(t *testing.T) faulttest.ClusterBackend {
	c := natstest.StartCluster(t, 3)
	return faulttest.ClusterBackend{
		Name:     "natsjs-cluster",
		Failover: &leaderLoss{c: c},
		NewBroker: func(t testing.TB, cfg pubsubtest.Config) (relay.Broker, error) {
			js, err := jetstream.New(natstest.ConnectCluster(t, c))
			if err != nil {
				return nil, err
			}
			return natsjs.NewBroker(js, append([]natsjs.Option{
				natsjs.WithGroup(cfg.Group),
				natsjs.WithMaxDeliver(cfg.MaxDeliver),
				natsjs.WithBackoff(cfg.MinBackoff, cfg.MaxBackoff),
				natsjs.WithConcurrency(cfg.Concurrency),
				natsjs.WithAckWait(cfg.AckWait),
				natsjs.WithLogger(faulttest.Logger()),
			}, replicated()...)...)
		},
	}
}

func TestClusterFailoverDuringPublish(t *testing.T) {
	faulttest.RunFailoverDuringPublish(t, clusterFaultBackend(t))
}

func TestClusterFailoverDuringConsume(t *testing.T) {
	faulttest.RunFailoverDuringConsume(t, clusterFaultBackend(t))
}
