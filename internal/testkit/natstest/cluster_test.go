package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay/internal/testkit/natstest"
)

// An R3 stream on the cluster keeps every acknowledged message when its
// leader is stopped: another node takes over, takes publishes, and the
// stopped node, started again on its own store, catches up.
func TestClusterStreamSurvivesLeaderStop(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	if got := len(c.URLs()); got != 3 {
		t.Fatalf("URLs: %d, want 3", got)
	}
	ctx, js, leader := ordersStream(t, c)
	c.StopNode(leader)
	next := c.WaitStreamLeader("ORDERS", 30*time.Second)
	if next < 0 || next == leader {
		t.Fatalf("stream leader after stopping n%d: %d", leader, next)
	}
	for {
		// The client may still be reconnecting to a running node.
		if _, err := js.Publish(ctx, "orders", []byte("after")); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("publish after failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.StartNode(leader); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Errorf("stream holds %d messages, want 2", info.State.Msgs)
	}
	if n := len(info.Cluster.Replicas); n != 2 {
		t.Errorf("%d replicas besides the leader, want 2", n)
	}
}

// A cut of a stream's leader, from its clients and its peers, is a real
// partition: the other two nodes elect a new leader and take publishes
// while the cut node is unreachable, and once healed it rejoins, behind the
// proxies again, with every message.
func TestClusterCutPartitionsLeader(t *testing.T) {
	c := natstest.StartCluster(t, 3, natstest.WithLinkProxies())
	ctx, _, leader := ordersStream(t, c)
	c.Cut(leader)
	start := time.Now()
	next := -1
	for next < 0 && time.Since(start) < 30*time.Second {
		for _, i := range c.StreamLeaders("ORDERS") {
			if i != leader {
				next = i
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if next < 0 {
		t.Fatalf("no node but the cut n%d leads the stream 30 s into the cut", leader)
	}
	t.Logf("n%d cut; n%d elected after %s", leader, next, time.Since(start).Round(time.Millisecond))
	// A client of the whole cluster, made during the cut, reaches the
	// majority through the other nodes' proxies.
	js2, err := jetstream.New(natstest.ConnectCluster(t, c))
	if err != nil {
		t.Fatal(err)
	}
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js2.Publish(pctx, "orders", []byte("during"))
		pcancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("publish during the cut: %v", err)
		}
	}
	if c.Dropped() == 0 {
		t.Error("the proxies swallowed nothing during the cut")
	}
	c.Heal(leader)
	if err := c.WaitReady(); err != nil {
		t.Fatal(err)
	}
	// The cut node, if it did not step down during the cut, does once it
	// hears the new leader's term, and catches up.
	healed := time.Now()
	if err := c.WaitStreamReady("ORDERS", 15*time.Second); err != nil {
		t.Fatal(err)
	}
	s, err := js2.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	// Right after the heal the stream's info may come from a replica that
	// knows no leader yet, with its own (stale) state: ask until a leader
	// answers.
	var info *jetstream.StreamInfo
	for {
		if info, err = s.Info(ctx); err != nil {
			t.Fatal(err)
		}
		if info.Cluster != nil && info.Cluster.Leader != "" {
			break
		}
		if time.Since(healed) > 15*time.Second {
			t.Fatal("no stream info from a leader 15 s after the heal")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if info.State.Msgs != 2 {
		t.Errorf("stream holds %d messages, want 2 (info from %s)", info.State.Msgs, info.Cluster.Leader)
	}
}

// ordersStream creates the R3 stream ORDERS (subject "orders") on c with one
// message stored, and returns a context bounding the test (a minute), the
// JetStream client and the stream's leader.
func ordersStream(t *testing.T, c *natstest.Cluster) (context.Context, jetstream.JetStream, int) {
	t.Helper()
	js, err := jetstream.New(natstest.ConnectCluster(t, c))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "ORDERS", Subjects: []string{"orders"}, Storage: jetstream.FileStorage, Replicas: 3,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "orders", []byte("before")); err != nil {
		t.Fatal(err)
	}
	leader := c.WaitStreamLeader("ORDERS", 10*time.Second)
	if leader < 0 {
		t.Fatal("no stream leader")
	}
	return ctx, js, leader
}
