package redisstreams_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/redisstreams"
)

// A group that a subscription had and lost (a restart without persistence,
// XGROUP DESTROY) is created again at "0", not at the start id of a new
// group: with StartNewest, what was published while the group was missing
// was skipped.
func TestLostGroupIsRecreatedFromTheStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(t *testing.T, e *env, topic string)
	}{
		{"restart without persistence", func(t *testing.T, e *env, _ string) {
			redistest.RequireControl(t)
			if err := e.srv.Restart(); err != nil {
				t.Fatal(err)
			}
		}},
		{"XGROUP DESTROY", func(t *testing.T, e *env, topic string) {
			if err := e.rc.XGroupDestroy(ctx(t), topic, redisstreams.DefaultGroup).Err(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			topic := e.topic("lost")
			b := broker(t, e.rc, fast(redisstreams.WithStartID(redisstreams.StartNewest))...)
			rec := newRecorder()
			if err := b.Subscribe(topic, func(p []byte) error { rec.add(p); return nil }); err != nil {
				t.Fatal(err)
			}
			publish(t, b, topic, "before")
			eventually(t, 5*time.Second, "entry before the loss not handled", func() bool { return rec.count("before") == 1 })

			tc.lose(t, e, topic)
			// Published at once, before the subscription notices the loss.
			var acked []string
			for i := range 5 {
				p := fmt.Sprintf("after-%d", i)
				c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := b.Publish(c, topic, []byte(p)); err == nil {
					acked = append(acked, p)
				}
				cancel()
			}
			if len(acked) == 0 {
				t.Fatal("no publish succeeded after the group was lost")
			}
			eventually(t, 10*time.Second, "an acknowledged publish was not handled after the group was lost", func() bool {
				for _, p := range acked {
					if rec.count(p) == 0 {
						return false
					}
				}
				return true
			})
		})
	}
}

// Seed defect 5: every start-up made a new consumer name and none was ever
// deleted. Closing deletes a consumer with nothing pending, and running
// subscriptions delete idle empty consumers that others left behind.
func TestConsumersDoNotAccumulate(t *testing.T) {
	t.Run("Close deletes its empty consumer", func(t *testing.T) {
		e := newEnv(t)
		topic := e.topic("jobs")
		for i := range 5 {
			b, err := redisstreams.NewBroker(e.rc, fast()...)
			if err != nil {
				t.Fatal(err)
			}
			rec := newRecorder()
			if err := b.Subscribe(topic, func(p []byte) error { rec.add(p); return nil }); err != nil {
				t.Fatal(err)
			}
			payload := fmt.Sprint("m", i)
			publish(t, b, topic, payload)
			eventually(t, 5*time.Second, "not delivered", func() bool { return rec.count(payload) == 1 })
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if cs := consumers(t, e.rc, topic, redisstreams.DefaultGroup); len(cs) != 0 {
			t.Errorf("%d consumers left after 5 brokers came and went: %+v; want 0", len(cs), cs)
		}
	})
	t.Run("idle empty consumers of others are removed", func(t *testing.T) {
		e := newEnv(t)
		topic := e.topic("jobs")
		if err := e.rc.XGroupCreateMkStream(ctx(t), topic, redisstreams.DefaultGroup, "0").Err(); err != nil {
			t.Fatal(err)
		}
		for _, ghost := range []string{"ghost-1", "ghost-2"} {
			if err := e.rc.XGroupCreateConsumer(ctx(t), topic, redisstreams.DefaultGroup, ghost).Err(); err != nil {
				t.Fatal(err)
			}
		}
		// Idle-consumer timeout: 10 × max(50ms claim, 20ms block) = 500ms.
		b := broker(t, e.rc, fast(redisstreams.WithClaimTimeout(50*time.Millisecond),
			redisstreams.WithBlockTimeout(20*time.Millisecond), redisstreams.WithConsumer("live"))...)
		rec := newRecorder()
		if err := b.Subscribe(topic, func(p []byte) error { rec.add(p); return nil }); err != nil {
			t.Fatal(err)
		}
		// Redis creates a reading consumer once it serves it an entry.
		publish(t, b, topic, "m")
		eventually(t, 5*time.Second, "not delivered", func() bool { return rec.count("m") == 1 })
		eventually(t, 5*time.Second, "idle empty consumers not removed (or the live one was)", func() bool {
			cs := consumers(t, e.rc, topic, redisstreams.DefaultGroup)
			return len(cs) == 1 && cs[0].Name == "live"
		})
	})
}

// Seed defect 6: BUSYGROUP was recognised by comparing the whole error text.
// Joining a group that exists must work for another broker, for the same
// broker, and for a group made outside relay.
func TestSubscribeTwiceToExistingGroup(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("shared")
	if err := e.rc.XGroupCreateMkStream(ctx(t), topic, "made-outside", "0").Err(); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	h := func(p []byte) error { rec.add(p); return nil }
	b1 := broker(t, e.rc, fast()...)
	b2 := broker(t, e.rc, fast()...)
	b3 := broker(t, e.rc, fast(redisstreams.WithGroup("made-outside"))...)
	for i, b := range []*redisstreams.Broker{b1, b1, b2, b3} {
		if err := b.Subscribe(topic, h); err != nil {
			t.Fatalf("Subscribe %d to an existing group: %v", i+1, err)
		}
	}
	publish(t, b1, topic, "x")
	eventually(t, 5*time.Second, "not delivered once per group", func() bool { return rec.count("x") == 2 })
	time.Sleep(200 * time.Millisecond)
	if n := rec.count("x"); n != 2 {
		t.Errorf("delivered %d times to two groups, want 2", n)
	}
}
