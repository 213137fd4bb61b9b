package breaktest_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-relay/relay/internal/redistest"
	"github.com/go-relay/relay/redisstreams"
)

// TestRedisManySubscribedTopicsDoNotStarvePublish subscribes one broker, with
// the default 2s block timeout, to twice as many topics as go-redis' default
// pool holds (10 per CPU), then publishes 20 messages at once on the same
// client: each Subscribe takes under 2s, every Publish succeeds within 1s, all
// 20 are delivered, and Close takes under 5s. It guards against blocking
// XREADGROUPs holding every pooled connection, so that Publish, Subscribe and
// Close starve on an idle server.
func TestRedisManySubscribedTopicsDoNotStarvePublish(t *testing.T) {
	e := redisEnv(t)
	b, err := redisstreams.NewBroker(e.rc, redisstreams.WithLogger(quiet)) // default block timeout
	must(t, err)
	defer func() {
		start := time.Now()
		closeBounded(t, b.Close)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Close of the broker took %v", d.Round(time.Millisecond))
		}
	}()
	topics := 10*runtime.GOMAXPROCS(0) + 20
	c := newCollector()
	for i := range topics {
		start := time.Now()
		err := b.Subscribe(e.topic(fmt.Sprintf("t%d", i)), c.handler)
		if d := time.Since(start); err != nil || d > 2*time.Second {
			t.Fatalf("Subscribe of topic #%d of %d took %v: err %v", i+1, topics, d.Round(time.Millisecond), err)
		}
	}
	// Not synchronisation: give the subscriptions time to enter their
	// blocking reads, the state in which they could starve the pool.
	time.Sleep(300 * time.Millisecond)
	var failed, slow atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			start := time.Now()
			if err := b.Publish(ctx, e.topic(fmt.Sprintf("t%d", i)), []byte("x")); err != nil {
				failed.Add(1)
				t.Logf("publish: %v", err)
			} else if time.Since(start) > time.Second {
				slow.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 || slow.Load() > 0 {
		t.Errorf("with %d subscribed topics, %d of 20 publishes failed within 3s and %d took over 1s (pool starved by blocking reads)",
			topics, failed.Load(), slow.Load())
	}
	if !c.waitN(t, 20-int(failed.Load()), 15*time.Second) {
		t.Errorf("delivered %d of %d within 15s", c.n(), 20-int(failed.Load()))
	}
}

// TestRedisKillWhileHandlersRunLosesNothing publishes 40 messages to a Redis
// server with an fsync'ed append-only file, kills the server (SIGKILL) while
// handlers run, and starts it again after 500ms: every message is handled at
// least once, by the same broker, without help. It guards against entries
// lost with their in-flight acks or reads, and against a consumer that does
// not resume after an outage.
func TestRedisKillWhileHandlersRunLosesNothing(t *testing.T) {
	e := redisEnv(t, redistest.Config{AppendOnly: true})
	topic := e.topic("kill")
	b := e.broker(t, cfg{conc: 4, ackWait: time.Second})
	const n = 40
	for i := range n {
		pubCtx(t, b, topic, []byte(fmt.Sprint(i)))
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	handled := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
	must(t, b.Subscribe(topic, func(p []byte) error {
		time.Sleep(50 * time.Millisecond) // a handler that takes a while
		mu.Lock()
		seen[string(p)] = true
		mu.Unlock()
		return nil
	}))
	if !poll(10*time.Second, func() bool { return handled() > 0 }) {
		t.Fatal("no message handled within 10s")
	}
	must(t, e.rs.Kill())
	time.Sleep(500 * time.Millisecond) // the outage
	must(t, e.rs.Start())
	if !poll(30*time.Second, func() bool { return handled() == n }) {
		t.Errorf("after kill and restart, handled %d of %d within 30s", handled(), n)
	}
}

// TestNATSRestartWhilePublishingLosesNoAcknowledgedMessage restarts the NATS
// server while 4 goroutines publish: publishing resumes after the restart, and
// every message whose Publish returned nil is later consumed by a new group.
// It guards against a Publish that returns nil for a message the server did
// not store, and against publishes that never recover from a restart.
func TestNATSRestartWhilePublishingLosesNoAcknowledgedMessage(t *testing.T) {
	e := natsEnv(t)
	topic := e.topic("restart")
	b := e.broker(t, cfg{})
	pubCtx(t, b, topic, []byte("warm"))
	var mu sync.Mutex
	acked := map[string]bool{"warm": true}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := fmt.Sprintf("%d-%d", g, i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := b.Publish(ctx, topic, []byte(p)); err == nil {
					mu.Lock()
					acked[p] = true
					mu.Unlock()
				}
				cancel()
				time.Sleep(2 * time.Millisecond) // pace the publishers
			}
		})
	}
	stopPublishing := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopPublishing()
	if !poll(10*time.Second, func() bool { return count() >= 50 }) {
		t.Fatalf("only %d publishes acknowledged within 10s before the restart", count())
	}
	must(t, e.ns.Restart())
	before := count()
	if !poll(20*time.Second, func() bool { return count() >= before+50 }) {
		t.Errorf("publishing did not resume within 20s of the restart: %d acknowledged since", count()-before)
	}
	stopPublishing()

	var gmu sync.Mutex
	got := map[string]bool{}
	b2 := e.broker(t, cfg{group: "reader"})
	must(t, b2.Subscribe(topic, func(p []byte) error { gmu.Lock(); got[string(p)] = true; gmu.Unlock(); return nil }))
	missing := 0
	poll(20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		gmu.Lock()
		defer gmu.Unlock()
		missing = 0
		for p := range acked {
			if !got[p] {
				missing++
			}
		}
		return missing == 0
	})
	if missing > 0 {
		t.Errorf("%d of %d acknowledged publishes not consumed within 20s after a server restart", missing, count())
	}
}
