package redisstreams_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/pubsubtest"
)

// The conformance suite on a Redis Cluster of three masters with a replica
// each, through a redis.ClusterClient (issue #15). The failover cases are in
// cluster_faults_test.go.

// clusterHarness serves the suite from one cluster per top-level test.
// Restart is not set: a cluster is not restarted in place; losing a node is
// what the failover cases test.
func clusterHarness(t *testing.T) pubsubtest.Harness {
	c := redistest.StartCluster(t)
	rc := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rc.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error {
		return n.ConfigSet(ctx, "proto-max-bulk-len", strconv.Itoa(harnessBulkMax)).Err()
	}); err != nil {
		t.Fatalf("CONFIG SET proto-max-bulk-len: %v", err)
	}
	// The delayed set of a topic carries the topic's hash tag, so it lives
	// in the slot of the topic's stream and the mover's script touches one
	// slot.
	return suiteHarness(rc, pubsubtest.Capabilities{Persistent: true, Ordered: true, MaxPayload: harnessBulkMax,
		Delayed: true, RetryAfter: true})
}

func TestClusterBroker(t *testing.T) { pubsubtest.TestBroker(t, clusterHarness(t)) }

func TestClusterWatermill(t *testing.T) { pubsubtest.TestWatermill(t, clusterHarness(t)) }

func TestClusterInspector(t *testing.T) { pubsubtest.TestInspector(t, clusterHarness(t)) }
