package redisstreams_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay/internal/testkit"
	"github.com/go-relay/relay/internal/testkit/faulttest"
	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/redisstreams"
)

// What a Redis Cluster asks of relay beyond the conformance suite (issue
// #15, item 4). Every command relay sends for a topic names one key, the
// topic's stream, or none; the dead-letter stream is another key, written by
// commands of its own. The conformance suite on the cluster would fail with
// CROSSSLOT otherwise; these cases test the parts it does not reach.

// Topics whose stream keys hash to the three masters of a cluster made by
// redis-cli --cluster create: "a" slot 15495, "b" 3300, "c" 7365.
var acrossMasters = []string{"a", "b", "c"}

// Concurrent publishes to topics on different masters are coalesced into
// pipelines that go-redis splits per master: every one arrives.
func TestClusterPipelineAcrossMasters(t *testing.T) {
	c := redistest.StartCluster(t)
	rc := c.Client(t)
	b, err := redisstreams.NewBroker(rc, redisstreams.WithLogger(faulttest.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = testkit.CloseWithin(t, waitClose, b.Close, "broker Close at cleanup") })
	masters := map[int]bool{}
	for _, topic := range acrossMasters {
		m, err := c.MasterOf(topic)
		if err != nil {
			t.Fatal(err)
		}
		masters[m] = true
	}
	if len(masters) != 3 {
		t.Fatalf("topics %v on %d masters, want 3", acrossMasters, len(masters))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const perTopic = 500
	var wg sync.WaitGroup
	errs := make(chan error, perTopic*len(acrossMasters))
	for i := range perTopic * len(acrossMasters) {
		wg.Go(func() { errs <- b.Publish(ctx, acrossMasters[i%len(acrossMasters)], fmt.Appendf(nil, "%d", i)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, topic := range acrossMasters {
		if n, err := rc.XLen(ctx, topic).Result(); err != nil || n != perTopic {
			t.Errorf("XLEN %s = %d, %v; want %d", topic, n, err, perTopic)
		}
	}
}

// More subscriptions than the cluster client's pool has connections: their
// blocking reads run on connections of their own, so Publish is not starved,
// every subscription consumes, and Close ends the reads at once.
func TestClusterBlockingReadersDoNotHoldThePool(t *testing.T) {
	c := redistest.StartCluster(t)
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), PoolSize: 2, PoolTimeout: time.Second})
	t.Cleanup(func() { rc.Close() })
	b, err := redisstreams.NewBroker(rc, redisstreams.WithBlockTimeout(10*time.Second),
		redisstreams.WithLogger(faulttest.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	const subs = 8
	got := make(chan string, subs)
	for i := range subs {
		topic := fmt.Sprintf("readers.%d", i)
		if err := b.Subscribe(topic, func([]byte) error { got <- topic; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the reads are blocking
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range subs {
		if err := b.Publish(ctx, fmt.Sprintf("readers.%d", i), []byte("x")); err != nil {
			t.Fatalf("publish %d with %d blocking reads: %v", i, subs, err)
		}
	}
	var seen []string
	for len(seen) < subs {
		select {
		case topic := <-got:
			seen = append(seen, topic)
		case <-ctx.Done():
			t.Fatalf("consumed %v of %d topics", seen, subs)
		}
	}
	start := time.Now()
	if err := testkit.CloseWithin(t, waitClose, b.Close, "Close with %d reads blocking", subs); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %s with reads blocking for 10 s: it waited for them", d)
	}
}

// The idle-consumer clean-up (a Lua script on the stream's key) removes a
// consumer left behind in the group, on whichever master has the stream.
func TestClusterIdleConsumerCleanup(t *testing.T) {
	c := redistest.StartCluster(t)
	rc := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, topic := range acrossMasters {
		if err := rc.XGroupCreateMkStream(ctx, topic, "cleanup", "0").Err(); err != nil {
			t.Fatal(err)
		}
		if err := rc.XGroupCreateConsumer(ctx, topic, "cleanup", "gone").Err(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := redisstreams.NewBroker(rc, redisstreams.WithGroup("cleanup"),
		redisstreams.WithClaimTimeout(100*time.Millisecond), redisstreams.WithBlockTimeout(50*time.Millisecond),
		redisstreams.WithLogger(faulttest.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = testkit.CloseWithin(t, waitClose, b.Close, "broker Close at cleanup") })
	for _, topic := range acrossMasters {
		if err := b.Subscribe(topic, func([]byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for _, topic := range acrossMasters {
		for {
			infos, err := rc.XInfoConsumers(ctx, topic, "cleanup").Result()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(infos, func(i redis.XInfoConsumer) bool { return i.Name == "gone" }) {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("idle consumer of %s not removed: %+v", topic, infos)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// slotMove moves a topic's slot to another master while the cases publish
// or consume: clients get ASK during the migration and MOVED after.
type slotMove struct{ c *redistest.Cluster }

func (m slotMove) Fail(topic string) error { _, _, err := m.c.MoveSlot(topic); return err }
func (slotMove) Recover() error            { return nil }

func reshardBackend(t *testing.T) faulttest.ClusterBackend {
	b := clusterFaultBackend(t, "redisstreams-cluster", false)
	b.Fault = "reshard"
	b.Failover = slotMove{b.Failover.(*masterLoss).c}
	return b
}

// A resharding of the topic's slot while publishing and while consuming:
// nothing confirmed is lost (MIGRATE moves the stream with its groups and
// pending entries as one key).
func TestClusterReshardDuringPublish(t *testing.T) {
	faulttest.RunFailoverDuringPublish(t, reshardBackend(t))
}

func TestClusterReshardDuringConsume(t *testing.T) {
	faulttest.RunFailoverDuringConsume(t, reshardBackend(t))
}
