package redisstreams_test

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/pubsubtest"
	"github.com/go-relay/relay/redisstreams"
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
	opts := func(cfg pubsubtest.Config) []redisstreams.Option {
		logger := cfg.Logger
		if logger == nil {
			logger = slog.New(slog.DiscardHandler)
		}
		return []redisstreams.Option{
			redisstreams.WithGroup(cfg.Group),
			redisstreams.WithMaxDeliver(cfg.MaxDeliver),
			redisstreams.WithBackoff(cfg.MinBackoff, cfg.MaxBackoff),
			redisstreams.WithConcurrency(cfg.Concurrency),
			redisstreams.WithClaimTimeout(cfg.AckWait),
			redisstreams.WithBlockTimeout(200 * time.Millisecond),
			redisstreams.WithLogger(logger),
		}
	}
	return pubsubtest.Harness{
		NewBroker: func(t *testing.T, cfg pubsubtest.Config) (relay.Broker, error) {
			return redisstreams.NewBroker(rc, opts(cfg)...)
		},
		NewPublisher: func(t *testing.T, cfg pubsubtest.Config) (message.Publisher, error) {
			return redisstreams.NewPublisher(rc, opts(cfg)...)
		},
		NewSubscriber: func(t *testing.T, cfg pubsubtest.Config) (message.Subscriber, error) {
			return redisstreams.NewSubscriber(rc, opts(cfg)...)
		},
		NewInspector: func(t *testing.T) relay.Inspector {
			in, err := redisstreams.NewInspector(rc, redisstreams.WithLogger(slog.New(slog.DiscardHandler)))
			if err != nil {
				t.Fatalf("NewInspector: %v", err)
			}
			return in
		},
		// The delayed set of a topic carries the topic's hash tag, so it
		// lives in the slot of the topic's stream and the mover's script
		// touches one slot.
		Capabilities: pubsubtest.Capabilities{Persistent: true, Ordered: true, MaxPayload: harnessBulkMax,
			Delayed: true, RetryAfter: true},
	}
}

func TestClusterBroker(t *testing.T) { pubsubtest.TestBroker(t, clusterHarness(t)) }

func TestClusterWatermill(t *testing.T) { pubsubtest.TestWatermill(t, clusterHarness(t)) }

func TestClusterInspector(t *testing.T) { pubsubtest.TestInspector(t, clusterHarness(t)) }
