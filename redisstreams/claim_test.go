package redisstreams_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay/internal/testkit"
	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/redisstreams"
)

// Seed defect 2b: the entries of a consumer that died were claimed only at
// start-up. Here they are claimed by a consumer that is already running, and
// none is lost or dead-lettered early (MaxDeliver 2: the dead consumer's
// delivery counts, the claimed one is the last allowed).
func TestEntriesOfDeadConsumerAreClaimed(t *testing.T) {
	const claim = 300 * time.Millisecond
	for _, tc := range []struct {
		name string
		// die makes a consumer of group take the entries of topic and die
		// holding them.
		die func(t *testing.T, e *env, topic, group string)
	}{
		{"a raw reader that never acks", func(t *testing.T, e *env, topic, group string) {
			res, err := e.rc.XReadGroup(ctx(t), &redis.XReadGroupArgs{Group: group, Consumer: "dead",
				Streams: []string{topic, ">"}, Count: 100, Block: -1}).Result()
			if err != nil || len(res) != 1 || len(res[0].Messages) != 5 {
				t.Fatalf("raw XREADGROUP = %v, %v; want 5 entries", res, err)
			}
		}},
		{"a broker cut off from Redis in its handlers", func(t *testing.T, e *env, topic, group string) {
			rc := redis.NewClient(redistest.Options(e.srv.Addr()))
			b, err := redisstreams.NewBroker(rc, fast(redisstreams.WithGroup(group), redisstreams.WithClaimTimeout(claim),
				redisstreams.WithConcurrency(5))...)
			if err != nil {
				t.Fatal(err)
			}
			release := make(chan struct{})
			var started atomic.Int64
			if err := b.Subscribe(topic, func([]byte) error { started.Add(1); <-release; return nil }); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "the doomed broker did not take the entries", func() bool { return started.Load() == 5 })
			rc.Close() // the process "dies": no more acks, no more idle refreshes
			t.Cleanup(func() {
				close(release)
				// Its acks fail on the closed client and are logged.
				_ = testkit.CloseWithin(t, waitClose, b.Close, "Close of the broker cut off from Redis")
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			topic, group := e.topic("work"), "workers"
			if err := e.rc.XGroupCreateMkStream(ctx(t), topic, group, "0").Err(); err != nil {
				t.Fatal(err)
			}
			pub := broker(t, e.rc, fast()...)
			want := []string{"m1", "m2", "m3", "m4", "m5"}
			publish(t, pub, topic, want...)
			tc.die(t, e, topic, group)

			rec := newRecorder()
			b := broker(t, e.rc, fast(redisstreams.WithGroup(group), redisstreams.WithClaimTimeout(claim),
				redisstreams.WithMaxDeliver(2))...)
			start := time.Now()
			if err := b.Subscribe(topic, func(p []byte) error { rec.add(p); return nil }); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "entries of the dead consumer not claimed", func() bool { return rec.distinct() == len(want) })
			if took := time.Since(start); took < claim/2 {
				t.Errorf("claimed after %v, before the claim timeout %v", took, claim)
			}
			eventually(t, 2*time.Second, "claimed entries still pending", func() bool {
				return pendingCount(t, e.rc, topic, group) == 0
			})
			for _, m := range want {
				if n := rec.count(m); n != 1 {
					t.Errorf("%s delivered %d times, want 1", m, n)
				}
			}
			if n := xlen(t, e.rc, topic+".dead"); n != 0 {
				t.Errorf("%d entries dead-lettered early", n)
			}
		})
	}
}

// A handler that runs for several claim timeouts keeps its entry: the other
// consumer of the group must not claim it meanwhile.
func TestSlowHandlerIsNotClaimedByAnother(t *testing.T) {
	e := newEnv(t)
	topic, group := e.topic("slow"), "slowgroup"
	const claim = 300 * time.Millisecond
	opts := fast(redisstreams.WithGroup(group), redisstreams.WithClaimTimeout(claim))
	var deliveries atomic.Int64
	done := make(chan struct{})
	slow := broker(t, e.rc, opts...)
	if err := slow.Subscribe(topic, func([]byte) error {
		deliveries.Add(1)
		time.Sleep(5 * claim)
		close(done)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, slow, topic, "long job")
	eventually(t, 5*time.Second, "slow handler not started", func() bool { return deliveries.Load() == 1 })

	other := broker(t, e.rc, opts...)
	if err := other.Subscribe(topic, func([]byte) error { deliveries.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("slow handler did not finish")
	}
	eventually(t, 2*time.Second, "entry still pending after the slow handler succeeded", func() bool {
		return pendingCount(t, e.rc, topic, group) == 0
	})
	time.Sleep(claim)
	if n := deliveries.Load(); n != 1 {
		t.Errorf("%d deliveries; the other consumer claimed an entry whose handler was running", n)
	}
}
