package redisstreams_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/faulttest"
	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/pubsubtest"
	"github.com/go-relay/relay/redisstreams"
)

// The failover cases of internal/testkit/faulttest on a Redis Cluster: the master of
// the topic's slot is killed with SIGKILL during publish and during consume,
// and started again (it rejoins as a replica). RELAY_FAULTS=full runs the
// full counts.

// masterLoss kills the master of a topic's stream key.
type masterLoss struct {
	c    *redistest.Cluster
	down int
}

func (f *masterLoss) Fail(topic string) error {
	i, err := f.c.KillMaster(topic) // the stream key is the topic
	f.down = i
	return err
}

func (f *masterLoss) Recover() error { return f.c.StartNode(f.down) }

// clusterFaultBackend runs the cases with extra options; each broker has a
// cluster client of its own, with go-redis' default options.
func clusterFaultBackend(t *testing.T, name string, mayLose bool, extra ...redisstreams.Option) faulttest.ClusterBackend {
	c := redistest.StartCluster(t)
	return faulttest.ClusterBackend{
		Name:                name,
		Failover:            &masterLoss{c: c},
		MayLoseAcknowledged: mayLose,
		NewBroker: func(t testing.TB, cfg pubsubtest.Config) (relay.Broker, error) {
			rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
			t.Cleanup(func() { rc.Close() })
			return redisstreams.NewBroker(rc, append([]redisstreams.Option{
				redisstreams.WithGroup(cfg.Group),
				redisstreams.WithMaxDeliver(cfg.MaxDeliver),
				redisstreams.WithBackoff(cfg.MinBackoff, cfg.MaxBackoff),
				redisstreams.WithConcurrency(cfg.Concurrency),
				redisstreams.WithClaimTimeout(cfg.AckWait),
				redisstreams.WithBlockTimeout(200 * time.Millisecond),
				redisstreams.WithLogger(faulttest.Logger()),
			}, extra...)...)
		},
	}
}

// Without WAIT, Redis may lose a write its master answered (asynchronous
// replication): lost messages are reported, not failed on.
func TestClusterFailoverDuringPublish(t *testing.T) {
	faulttest.RunFailoverDuringPublish(t, clusterFaultBackend(t, "redisstreams-cluster", true))
}

func TestClusterFailoverDuringConsume(t *testing.T) {
	faulttest.RunFailoverDuringConsume(t, clusterFaultBackend(t, "redisstreams-cluster", true))
}
