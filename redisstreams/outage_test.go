package redisstreams_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/redisstreams"
)

// An XACK that fails while Redis is down is kept and sent again once the
// server is back: the entry is not delivered a second time.
func TestAcksFailedWhileRedisIsDownAreRetried(t *testing.T) {
	redistest.RequireControl(t)
	e := newEnv(t, redistest.Config{AppendOnly: true})
	topic := e.topic("acks")
	const claim = 300 * time.Millisecond
	b := broker(t, e.rc, fast(redisstreams.WithClaimTimeout(claim))...)
	publish(t, b, topic, "m")
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	releaseOnce := sync.OnceFunc(func() { close(release) })
	// Registered after the broker's Close, so it runs before it: a test
	// that ends early never leaves Close waiting for the handler.
	t.Cleanup(releaseOnce)
	rec := newRecorder()
	if err := b.Subscribe(topic, func(p []byte) error {
		rec.add(p)
		once.Do(func() { close(started); <-release })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not started within 10s")
	}
	if err := e.srv.Kill(); err != nil {
		t.Fatal(err)
	}
	releaseOnce() // the XACK fails: the server is down
	// Longer than the 2 s bound of one XACK, during which go-redis redials.
	time.Sleep(6 * time.Second)
	if err := e.srv.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "entry still pending after the restart", func() bool {
		p, err := e.rc.XPending(context.Background(), topic, redisstreams.DefaultGroup).Result()
		return err == nil && p.Count == 0
	})
	time.Sleep(5 * claim) // a dropped ack would be claimed and delivered again by now
	if n := rec.count("m"); n != 1 {
		t.Errorf("entry delivered %d times; want 1 (its ack must be retried, not dropped)", n)
	}
}

// Seed defect 4: a failed XREADGROUP was retried at once, in a hot loop.
// Each case makes reads fail for a while and counts the XREADGROUP calls: the
// subscription must pause between reads (100ms doubling to 2s: about 5 calls
// in 2s, where a hot loop makes thousands), then resume by itself.
func TestReadErrorsBackOff(t *testing.T) {
	const outage = 2 * time.Second
	for _, tc := range []struct {
		name string
		// fail makes reads fail; heal undoes it.
		fail, heal func(t *testing.T, e *env, topic string)
	}{
		{
			// Errors that Redis answers at once: WRONGTYPE, then NOGROUP
			// once the key is gone, which makes the subscription create
			// the group again.
			name: "the stream is replaced by a string",
			fail: func(t *testing.T, e *env, topic string) {
				if err := e.rc.Set(ctx(t), topic, "not a stream", 0).Err(); err != nil {
					t.Fatal(err)
				}
			},
			heal: func(t *testing.T, e *env, topic string) {
				if err := e.rc.Del(ctx(t), topic).Err(); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			// Connection errors. The server has no persistence, so the
			// group is gone after the restart and must be created again.
			name: "the server is killed and started again",
			fail: func(t *testing.T, e *env, topic string) {
				redistest.RequireControl(t)
				if err := e.srv.Kill(); err != nil {
					t.Fatal(err)
				}
			},
			heal: func(t *testing.T, e *env, topic string) {
				if err := e.srv.Start(); err != nil {
					t.Fatal(err)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			topic := e.topic("events")
			reads := &commandCounter{name: "xreadgroup"}
			rc := redistest.Client(t, e.srv)
			b := broker(t, rc, fast(redisstreams.WithReaderHook(reads))...)
			rec := newRecorder()
			if err := b.Subscribe(topic, func(p []byte) error { rec.add(p); return nil }); err != nil {
				t.Fatal(err)
			}
			publish(t, b, topic, "before")
			eventually(t, 5*time.Second, "no delivery before the failure", func() bool { return rec.count("before") == 1 })

			tc.fail(t, e, topic)
			time.Sleep(150 * time.Millisecond) // the blocked read ends and fails
			before := reads.n.Load()
			time.Sleep(outage)
			during := reads.n.Load() - before
			t.Logf("%d XREADGROUP calls in %v of failure", during, outage)
			if during > 15 {
				t.Errorf("%d XREADGROUP calls in %v of failure; want a backoff (at most 15)", during, outage)
			}

			tc.heal(t, e, topic)
			publish(t, b, topic, "after")
			eventually(t, 10*time.Second, "consumption did not resume", func() bool { return rec.count("after") == 1 })
		})
	}
}
