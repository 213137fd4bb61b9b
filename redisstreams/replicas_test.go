package redisstreams_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit"
	"github.com/go-relay/relay/internal/testkit/faulttest"
	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/redisstreams"
)

func TestReplicaAcksOptionRange(t *testing.T) {
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	t.Cleanup(func() { rc.Close() })
	tests := []struct {
		name    string
		n       int
		timeout time.Duration
		ok      bool
	}{
		{"one replica, a second", 1, time.Second, true},
		{"the longest timeout", 2, redisstreams.MaxReplicaAckTimeout, true},
		{"zero replicas", 0, time.Second, false},
		{"negative replicas", -1, time.Second, false},
		{"the most replicas", redisstreams.MaxReplicaAcks, time.Second, true},
		{"above the most replicas", redisstreams.MaxReplicaAcks + 1, time.Second, false},
		{"zero timeout, WAIT's for ever", 1, 0, false},
		{"below a millisecond", 1, time.Microsecond, false},
		{"above the longest", 1, redisstreams.MaxReplicaAckTimeout + time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := redisstreams.NewBroker(rc, redisstreams.WithReplicaAcks(tt.n, tt.timeout))
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				b.Close()
				return
			}
			if !errors.Is(err, relay.ErrInvalidOption) {
				t.Fatalf("err = %v, want ErrInvalidOption", err)
			}
		})
	}
	t.Run("a ring client is refused", func(t *testing.T) {
		ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
		t.Cleanup(func() { ring.Close() })
		_, err := redisstreams.NewBroker(ring, redisstreams.WithReplicaAcks(1, time.Second))
		if !errors.Is(err, relay.ErrInvalidOption) {
			t.Fatalf("err = %v, want ErrInvalidOption", err)
		}
		_, err = redisstreams.NewInspector(ring, redisstreams.WithReplicaAcks(1, time.Second))
		if !errors.Is(err, relay.ErrInvalidOption) {
			t.Fatalf("NewInspector: err = %v, want ErrInvalidOption", err)
		}
	})
}

// On a cluster, Publish with WithReplicaAcks returns once the replica has
// the entry, singly and coalesced across topics on different masters, and
// returns ErrNotReplicated when the replica of the topic's master is paused.
func TestClusterReplicaAcks(t *testing.T) {
	c := redistest.StartCluster(t)
	rc := c.Client(t)
	b, err := redisstreams.NewBroker(rc, redisstreams.WithReplicaAcks(1, 500*time.Millisecond),
		redisstreams.WithLogger(faulttest.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = testkit.CloseWithin(t, waitClose, b.Close, "broker Close at cleanup") })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Topics whose keys hash to every master: "a" 15495, "b" 3300, "c" 7365.
	topics := []string{"a", "b", "c"}
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for i := range 300 {
		wg.Go(func() { errs <- b.Publish(ctx, topics[i%3], []byte("x")) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("publish with a replica up: %v", err)
		}
	}
	for _, topic := range topics {
		if n, err := rc.XLen(ctx, topic).Result(); err != nil || n != 100 {
			t.Fatalf("XLEN %s = %d, %v; want 100", topic, n, err)
		}
	}

	pauseReplicas(t, c, "a")
	start := time.Now()
	err = b.Publish(ctx, "a", []byte("unreplicated"))
	if !errors.Is(err, redisstreams.ErrNotReplicated) {
		t.Fatalf("publish with the replica paused: %v, want ErrNotReplicated", err)
	}
	if d := time.Since(start); d < 500*time.Millisecond || d > 5*time.Second {
		t.Errorf("publish returned after %s, want about the 500ms timeout", d)
	}
	// A topic on another master is not held up.
	if err := b.Publish(ctx, "b", []byte("replicated")); err != nil {
		t.Fatalf("publish to another master: %v", err)
	}
}

// The failover during publish with WithReplicaAcks: nothing that Publish
// confirmed may be lost.
func TestClusterFailoverDuringPublishReplicaAcks(t *testing.T) {
	faulttest.RunFailoverDuringPublish(t, clusterFaultBackend(t, "redisstreams-cluster-wait1", false,
		redisstreams.WithReplicaAcks(1, time.Second)))
}

// With WithReplicaAcks, PublishAt's ZADD waits for the replica and returns
// ErrNotReplicated while it is paused, a move of due entries that the paused
// replica did not acknowledge is logged, and delivered all the same, and a
// re-check that moves nothing does not wait for the replica.
func TestClusterReplicaAcksDelayed(t *testing.T) {
	c := redistest.StartCluster(t)
	rc := c.Client(t)
	logs := &logRecorder{}
	b, err := redisstreams.NewBroker(rc, redisstreams.WithReplicaAcks(1, 500*time.Millisecond),
		redisstreams.WithLogger(slog.New(logs)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = testkit.CloseWithin(t, waitClose, b.Close, "broker Close at cleanup") })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := make(chan string, 10)
	if err := b.Subscribe("a", func(p []byte) error { got <- string(p); return nil }); err != nil {
		t.Fatal(err)
	}
	// Due once the replica is paused below; the ZADD itself is replicated.
	if err := b.PublishAt(ctx, "a", []byte("scheduled"), time.Now().Add(4*time.Second)); err != nil {
		t.Fatalf("PublishAt with the replica up: %v", err)
	}

	pauseReplicas(t, c, "a")
	err = b.PublishAt(ctx, "a", []byte("unreplicated"), time.Now().Add(time.Hour))
	if !errors.Is(err, redisstreams.ErrNotReplicated) {
		t.Fatalf("PublishAt with the replica paused: %v, want ErrNotReplicated", err)
	}
	select {
	case p := <-got:
		if p != "scheduled" {
			t.Fatalf("delivered %q, want the scheduled message", p)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the scheduled message was not delivered within 30 s of its due time")
	}
	// The entry is in the stream before WAIT times out: the warning may
	// come after the delivery.
	var attrs map[string]string
	eventually(t, 10*time.Second, "a warning that the paused replica did not acknowledge the move", func() bool {
		var ok bool
		attrs, ok = logs.find(slog.LevelWarn, "too few replicas acknowledged a move")
		return ok
	})
	if !strings.Contains(attrs["error"], "WAIT 1 500 answered 0") {
		t.Errorf("warning's error = %q, want WAIT's answer", attrs["error"])
	}
	// The unreplicated entry keeps the mover re-checking the set every
	// DelayRecheck; runs that move nothing send no WAIT, so they neither
	// wait for the paused replica nor warn.
	time.Sleep(2*redisstreams.DelayRecheck + time.Second)
	logs.mu.Lock()
	defer logs.mu.Unlock()
	for _, r := range logs.records {
		if r.Level != slog.LevelWarn || !strings.Contains(r.Message, "too few replicas acknowledged a move") {
			continue
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "moved" && a.Value.String() == "0" {
				t.Errorf("a run of the mover that moved nothing waited for the replicas: %s %v", r.Message, a)
				return false
			}
			return true
		})
	}
}

// With WithReplicaAcks, the Inspector's Redrive republishes as Publish does:
// while the replica of the destination's master is paused it returns
// ErrNotReplicated and keeps the dead letter (a later redrive may deliver
// the message twice, never lose it); with the replica running it moves it.
func TestClusterInspectorRedriveReplicaAcks(t *testing.T) {
	c := redistest.StartCluster(t)
	rc := c.Client(t)
	b, err := redisstreams.NewBroker(rc, redisstreams.WithLogger(faulttest.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = testkit.CloseWithin(t, waitClose, b.Close, "broker Close at cleanup") })
	if err := b.Subscribe("a", func([]byte) error { return relay.ErrPermanent }); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"first", "second"} {
		if err := b.Publish(ctx(t), "a", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "two dead letters on a.dead", func() bool {
		n, _ := rc.XLen(ctx(t), "a.dead").Result()
		return n == 2
	})
	// No consumer on "a" from here on, so that a redriven entry stays put.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	in := inspector(t, rc, redisstreams.WithReplicaAcks(1, 500*time.Millisecond))
	dls := collect(t, in.DeadLetters(ctx(t), "a.dead", relay.DeadLetterFilter{}))
	if len(dls) != 2 {
		t.Fatalf("dead letters = %d, want 2", len(dls))
	}
	// Two handlers dead-letter the two at once, in either order: first
	// is the one the paused replica refuses, second the one redriven.
	slices.SortFunc(dls, func(a, b relay.DeadLetter) int { return strings.Compare(string(a.Payload), string(b.Payload)) })
	before := xlen(t, rc, "a")

	replicas := pauseReplicas(t, c, "a")
	err = in.Redrive(ctx(t), dls[0], "")
	if !errors.Is(err, redisstreams.ErrNotReplicated) {
		t.Fatalf("redrive with the replica paused: %v, want ErrNotReplicated", err)
	}
	if n := xlen(t, rc, "a.dead"); n != 2 {
		t.Fatalf("dead letters after an unreplicated redrive = %d, want 2 (kept)", n)
	}
	for _, r := range replicas {
		if err := c.Node(r).Resume(); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Redrive(ctx(t), dls[1], ""); err != nil {
		t.Fatalf("redrive with the replica running: %v", err)
	}
	left := payloads(collect(t, in.DeadLetters(ctx(t), "a.dead", relay.DeadLetterFilter{})))
	if !slices.Equal(left, []string{"first"}) {
		t.Errorf("dead letters after the replicated redrive = %q, want [first]", left)
	}
	// The unreplicated attempt's entry is on the master too: the message may
	// come twice, it is not lost.
	if n := xlen(t, rc, "a"); n != before+2 {
		t.Errorf("entries on a = %d, want %d", n, before+2)
	}
}

// pauseReplicas pauses (SIGSTOP) every replica of the master of key's slot,
// resumed at cleanup, and returns them.
func pauseReplicas(t *testing.T, c *redistest.Cluster, key string) []int {
	t.Helper()
	replicas, err := c.ReplicasOf(key)
	if err != nil || len(replicas) == 0 {
		t.Fatalf("replicas of the master of %s: %v, %v", key, replicas, err)
	}
	for _, r := range replicas {
		if err := c.Node(r).Pause(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Node(r).Resume() })
	}
	return replicas
}
