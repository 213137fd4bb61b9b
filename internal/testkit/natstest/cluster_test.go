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
	js, err := jetstream.New(natstest.ConnectCluster(t, c))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
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
