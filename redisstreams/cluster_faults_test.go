package redisstreams_test

import (
	"context"
	"net"
	"strings"
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
// the topic's slot is killed with SIGKILL during publish, consume, dead-letter
// writes, the claim of a dead consumer's entries and Close, and started again
// (it rejoins as a replica); the master is black-holed behind a proxy.
// RELAY_FAULTS=full runs the full counts.

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

// clusterFaultBroker is a broker of cfg, with extra options, on a cluster
// client of its own with go-redis' default options and opts' addresses (and
// dialer), closed in t.Cleanup.
func clusterFaultBroker(t testing.TB, opts *redis.ClusterOptions, cfg pubsubtest.Config, extra ...redisstreams.Option) (relay.Broker, error) {
	rc := redis.NewClusterClient(opts)
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
}

// clusterHelperBroker is the broker of the claim case's child process: addr
// is every node's address, comma-separated.
func clusterHelperBroker(t testing.TB, addr string, cfg pubsubtest.Config) (relay.Broker, error) {
	return clusterFaultBroker(t, &redis.ClusterOptions{Addrs: strings.Split(addr, ",")}, cfg)
}

func TestClusterFaultHelperProcess(t *testing.T) { faulttest.HelperProcess(t, clusterHelperBroker) }

// clusterFaultBackend runs the cases with extra options; each broker has a
// cluster client of its own, with go-redis' default options.
func clusterFaultBackend(t *testing.T, name string, mayLose bool, extra ...redisstreams.Option) faulttest.ClusterBackend {
	c := redistest.StartCluster(t)
	return faulttest.ClusterBackend{
		Name:                name,
		Failover:            &masterLoss{c: c},
		MayLoseAcknowledged: mayLose,
		NewBroker: func(t testing.TB, cfg pubsubtest.Config) (relay.Broker, error) {
			return clusterFaultBroker(t, &redis.ClusterOptions{Addrs: c.Addrs()}, cfg, extra...)
		},
		HelperTest: "TestClusterFaultHelperProcess",
		HelperAddr: strings.Join(c.Addrs(), ","),
		CutNode: func(topic string) (string, error) {
			i, err := c.MasterOf(topic) // the stream key is the topic
			if err != nil {
				return "", err
			}
			return c.Addrs()[i], nil
		},
		NewBrokerVia: func(t testing.TB, cfg pubsubtest.Config, node, via string) (relay.Broker, error) {
			var d net.Dialer
			return clusterFaultBroker(t, &redis.ClusterOptions{
				Addrs: c.Addrs(),
				Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
					if addr == node {
						addr = via
					}
					return d.DialContext(ctx, network, addr)
				},
			}, cfg, extra...)
		},
		// Broker.Shutdown's doc: what it sends once the handlers returned
		// takes at most 1 s, a command in flight against a Redis that does
		// not answer ends within 2 s: about 3 s in all.
		CloseBound: 3 * time.Second,
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

func TestClusterFailoverDuringDeadLetter(t *testing.T) {
	faulttest.RunFailoverDuringDeadLetter(t, clusterFaultBackend(t, "redisstreams-cluster", true))
}

func TestClusterFailoverOfDeadLetterTopic(t *testing.T) {
	faulttest.RunFailoverOfDeadLetterTopic(t, clusterFaultBackend(t, "redisstreams-cluster", true))
}

// With WAIT on the dead-letter write, a dead letter the failover could lose
// counts as failed and its source stays pending: none may be lost.
func TestClusterFailoverOfDeadLetterTopicReplicaAcks(t *testing.T) {
	faulttest.RunFailoverOfDeadLetterTopic(t, clusterFaultBackend(t, "redisstreams-cluster-wait1", false,
		redisstreams.WithReplicaAcks(1, time.Second)))
}

func TestClusterFailoverDuringClaim(t *testing.T) {
	faulttest.RunFailoverDuringClaim(t, clusterFaultBackend(t, "redisstreams-cluster", true))
}

func TestClusterNetworkCut(t *testing.T) {
	faulttest.RunClusterNetworkCut(t, clusterFaultBackend(t, "redisstreams-cluster", true))
}

func TestClusterCloseDuringFailover(t *testing.T) {
	faulttest.RunCloseDuringFailover(t, clusterFaultBackend(t, "redisstreams-cluster", true))
}
