package redisstreams_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/redistest"
	"github.com/go-relay/relay/redisstreams"
)

// Seed defect 1: the group was created at "$", so entries published before
// the first Subscribe were never delivered.
func TestPublishBeforeGroupIsDelivered(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("orders")
	b := broker(t, e.rc, fast()...)
	publish(t, b, topic, "a", "b", "c")

	rec := newRecorder()
	if err := b.Subscribe(topic, func(p []byte) error { rec.add(p); return nil }); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "entries published before the group existed were not delivered", func() bool {
		return rec.distinct() == 3
	})
}

// Seed defect 2a: a failed entry was retried only when the process
// restarted. The claim timeout here is long, so only the retry timer can
// redeliver it.
func TestFailedEntryIsRetriedWhileRunning(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("retry")
	b := broker(t, e.rc, fast(redisstreams.WithMaxDeliver(3))...)
	rec := newRecorder()
	if err := b.Subscribe(topic, func(p []byte) error {
		rec.add(p)
		if rec.count(string(p)) < 3 {
			return errors.New("induced failure")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, "m")
	eventually(t, 5*time.Second, "failed entry not redelivered while the consumer runs", func() bool {
		return rec.count("m") == 3
	})
	eventually(t, 2*time.Second, "entry still pending after the third delivery succeeded", func() bool {
		return pendingCount(t, e.rc, topic, redisstreams.DefaultGroup) == 0
	})
	ts := rec.deliveries("m")
	for i := 1; i < len(ts); i++ {
		if gap := ts[i].Sub(ts[i-1]); gap < 10*time.Millisecond { // half the 20ms min backoff
			t.Errorf("delivery %d came %v after the previous one; want a backoff of at least 10ms", i+1, gap)
		}
	}
	if n := xlen(t, e.rc, topic+".dead"); n != 0 {
		t.Errorf("%d dead letters; want none: the third delivery succeeded", n)
	}
	time.Sleep(300 * time.Millisecond) // a few max backoffs: no further delivery may come
	if n := rec.count("m"); n != 3 {
		t.Errorf("%d deliveries, want 3", n)
	}
}

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
				b.Close() // its acks fail on the closed client and are logged
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

// Seed defect 3: the dead-letter XADD's error was ignored and the entry
// acked, losing it. The dead-letter key is a plain string here, so XADD
// fails with WRONGTYPE: the entry must stay pending and be tried again, and
// reach the dead-letter stream once it can be written.
func TestDeadLetterWriteFailureKeepsEntryPending(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("payments")
	dead := topic + ".dead"
	if err := e.rc.Set(ctx(t), dead, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	b := broker(t, e.rc, fast()...)
	rec := newRecorder()
	if err := b.Subscribe(topic, func(p []byte) error {
		rec.add(p)
		return relay.Permanent(errors.New("cannot ever work"))
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, "p")
	eventually(t, 5*time.Second, "entry not delivered again after the dead-letter write failed", func() bool {
		return rec.count("p") >= 3
	})
	if n := pendingCount(t, e.rc, topic, redisstreams.DefaultGroup); n != 1 {
		t.Fatalf("%d entries pending while the dead letter cannot be written, want 1", n)
	}

	if err := e.rc.Del(ctx(t), dead).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "entry not dead-lettered once the dead-letter stream is writable", func() bool {
		n, err := e.rc.XLen(ctx(t), dead).Result()
		return err == nil && n == 1
	})
	eventually(t, 2*time.Second, "entry still pending after its dead letter was written", func() bool {
		return pendingCount(t, e.rc, topic, redisstreams.DefaultGroup) == 0
	})
	msgs, err := e.rc.XRange(ctx(t), dead, "-", "+").Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("XRANGE %s = %v, %v", dead, msgs, err)
	}
	if got := msgs[0].Values["payload"]; got != "p" {
		t.Errorf("dead letter payload = %q, want %q", got, "p")
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

// Seed defect 7: there was no Close, and the read loop ignored shutdown.
// Close must return within about the block timeout, after the running
// handler returned, with no goroutine left and the client still usable.
func TestCloseIsPromptAndLeavesClientOpen(t *testing.T) {
	e := newEnv(t)
	ignore := goleak.IgnoreCurrent()
	const block = 300 * time.Millisecond
	b, err := redisstreams.NewBroker(e.rc, fast(redisstreams.WithBlockTimeout(block))...)
	if err != nil {
		t.Fatal(err)
	}
	var running, finished atomic.Bool
	for _, name := range []string{"a", "b", "c"} {
		if err := b.Subscribe(e.topic(name), func([]byte) error {
			running.Store(true)
			time.Sleep(200 * time.Millisecond)
			finished.Store(true)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	publish(t, b, e.topic("a"), "slow")
	eventually(t, 5*time.Second, "handler not started", running.Load)

	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	took := time.Since(start)
	if took > block+time.Second {
		t.Errorf("Close took %v; want about the block timeout %v", took, block)
	}
	if !finished.Load() {
		t.Error("Close returned before the running handler finished")
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := e.rc.Ping(ctx(t)).Err(); err != nil {
		t.Errorf("client unusable after Close: %v", err)
	}
	if n := pendingCount(t, e.rc, e.topic("a"), redisstreams.DefaultGroup); n != 0 {
		t.Errorf("%d entries pending; the handler that finished during Close must be acked", n)
	}
	if err := goleak.Find(ignore); err != nil {
		t.Errorf("goroutines left after Close: %v", err)
	}
	t.Logf("Close took %v", took)
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

// An entry that cannot be decoded goes to the dead-letter stream with the
// decode error, without reaching the handler.
func TestUndecodableEntryIsDeadLettered(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("foreign")
	for _, values := range [][]any{
		{"data", "no payload field"},
		{"_watermill_message_uuid", "u1", "metadata", "\xc1corrupt", "payload", "kept"},
	} {
		if err := e.rc.XAdd(ctx(t), &redis.XAddArgs{Stream: topic, Values: values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	b := broker(t, e.rc, fast()...)
	var called atomic.Int64
	if err := b.Subscribe(topic, func([]byte) error { called.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	dead := topic + ".dead"
	eventually(t, 5*time.Second, "undecodable entries not dead-lettered", func() bool {
		n, err := e.rc.XLen(ctx(t), dead).Result()
		return err == nil && n == 2
	})
	eventually(t, 2*time.Second, "undecodable entries still pending", func() bool {
		return pendingCount(t, e.rc, topic, redisstreams.DefaultGroup) == 0
	})
	if n := called.Load(); n != 0 {
		t.Errorf("handler called %d times for undecodable entries", n)
	}
	msgs, err := e.rc.XRange(ctx(t), dead, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	sub, err := redisstreams.NewSubscriber(e.rc, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	out, err := sub.Subscribe(ctx(t), dead)
	if err != nil {
		t.Fatal(err)
	}
	for range msgs {
		select {
		case m := <-out:
			if r := m.Metadata.Get(relay.MetadataReason); !strings.Contains(r, "decode") {
				t.Errorf("dead letter reason %q does not mention the decode error", r)
			}
			if m.Metadata.Get(relay.MetadataSourceTopic) != topic || m.Metadata.Get(relay.MetadataSourceID) == "" {
				t.Errorf("dead letter metadata %v lacks source topic or id", m.Metadata)
			}
			if m.UUID == "u1" && string(m.Payload) != "kept" {
				t.Errorf("dead letter of the corrupt-metadata entry has payload %q, want %q", m.Payload, "kept")
			}
			m.Ack()
		case <-time.After(5 * time.Second):
			t.Fatal("dead letters not readable")
		}
	}
}

// The Watermill faces write and read watermill-redisstream's fields, so that
// a service can migrate one process at a time; entries of the seed (only a
// payload field) are read too.
func TestWireFormatCompatibility(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("compat")
	// What watermill-redisstream's publisher writes: msgpack metadata.
	md := "\x81\xa1k\xa1v" // msgpack {"k": "v"}
	for _, values := range [][]any{
		{"_watermill_message_uuid", "wm-uuid", "metadata", md, "payload", "from watermill"},
		{"payload", "from the seed"},
	} {
		if err := e.rc.XAdd(ctx(t), &redis.XAddArgs{Stream: topic, Values: values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := redisstreams.NewSubscriber(e.rc, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	out, err := sub.Subscribe(ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]string{}
	for range 2 {
		select {
		case m := <-out:
			mu.Lock()
			got[string(m.Payload)] = m.UUID + "|" + m.Metadata.Get("k")
			mu.Unlock()
			m.Ack()
		case <-time.After(5 * time.Second):
			t.Fatalf("got %v, want two messages", got)
		}
	}
	if got["from watermill"] != "wm-uuid|v" || got["from the seed"] != "|" {
		t.Errorf("read %v", got)
	}
}
