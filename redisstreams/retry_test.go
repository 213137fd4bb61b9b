package redisstreams_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay/internal/testkit"
	"github.com/go-relay/relay/redisstreams"
)

// An entry waiting for its redelivery that an operator removed (XDEL, XTRIM,
// XGROUP DELCONSUMER) is not delivered again, and says so at Warn with its
// id; it vanished without a word.
func TestEntryRemovedDuringBackoffIsLogged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remove func(c context.Context, rc redis.UniversalClient, topic, id, consumer string) error
	}{
		{"XDEL", func(c context.Context, rc redis.UniversalClient, topic, id, _ string) error {
			return rc.XDel(c, topic, id).Err()
		}},
		{"XTRIM", func(c context.Context, rc redis.UniversalClient, topic, _, _ string) error {
			return rc.XTrimMaxLen(c, topic, 0).Err()
		}},
		{"XGROUP DELCONSUMER", func(c context.Context, rc redis.UniversalClient, topic, _, consumer string) error {
			return rc.XGroupDelConsumer(c, topic, redisstreams.DefaultGroup, consumer).Err()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			topic := e.topic("gone")
			logs := &logRecorder{}
			const backoff = 500 * time.Millisecond
			b := broker(t, e.rc, fast(redisstreams.WithBackoff(backoff, backoff),
				redisstreams.WithConsumer("c1"), redisstreams.WithLogger(slog.New(logs)))...)
			failed := make(chan struct{})
			var once sync.Once
			rec := newRecorder()
			if err := b.Subscribe(topic, func(p []byte) error {
				rec.add(p)
				once.Do(func() { close(failed) })
				return errors.New("induced failure")
			}); err != nil {
				t.Fatal(err)
			}
			publish(t, b, topic, "m")
			msgs, err := e.rc.XRange(ctx(t), topic, "-", "+").Result()
			if err != nil || len(msgs) != 1 {
				t.Fatalf("XRANGE = %v, %v; want one entry", msgs, err)
			}
			id := msgs[0].ID
			testkit.Receive(t, failed, 10*time.Second, "the failing handler's call")
			if err := tc.remove(ctx(t), e.rc, topic, id, "c1"); err != nil {
				t.Fatal(err)
			}
			const msg = "redisstreams: entry waiting for redelivery is no longer pending"
			var attrs map[string]string
			eventually(t, 5*time.Second, "no Warn record for the removed entry", func() bool {
				var ok bool
				attrs, ok = logs.find(slog.LevelWarn, msg)
				return ok
			})
			if attrs["id"] != id || attrs["topic"] != topic || attrs["group"] != redisstreams.DefaultGroup {
				t.Errorf("record attributes %v; want id %s, topic %s, group %s", attrs, id, topic, redisstreams.DefaultGroup)
			}
			if n := rec.count("m"); n != 1 {
				t.Errorf("entry handled %d times; want 1 (removed before its redelivery)", n)
			}
		})
	}
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
