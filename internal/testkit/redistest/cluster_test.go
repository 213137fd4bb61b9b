package redistest_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-relay/relay/internal/testkit/redistest"
)

// A key written before its master is killed is read from the replica that
// took over, and the killed node rejoins as a replica.
func TestClusterKillMasterPromotesReplica(t *testing.T) {
	c := redistest.StartCluster(t)
	if got := len(c.Addrs()); got != 6 {
		t.Fatalf("Addrs: %d, want 6", got)
	}
	rc := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rc.Set(ctx, "orders", "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// WAIT makes the replica hold the write before the kill.
	if err := rc.Do(ctx, "WAIT", 1, 5000).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	killed, err := c.KillMaster("orders")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("replica of node %d took over in %s", killed, time.Since(start).Round(time.Millisecond))
	if m, err := c.MasterOf("orders"); err != nil || m == killed {
		t.Fatalf("master after the kill: %d, %v", m, err)
	}
	for {
		v, err := rc.Get(ctx, "orders").Result()
		if err == nil {
			if v != "before" {
				t.Fatalf("orders = %q", v)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("get after failover: %v", err)
		}
		// go-redis v9.23 reloads the slot map on MOVED or every 60 s, not
		// on a connection error: without this it dials the dead master
		// for up to a minute.
		rc.ReloadState(ctx)
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.StartNode(killed); err != nil {
		t.Fatal(err)
	}
}
