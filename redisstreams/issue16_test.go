package redisstreams_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/redistest"
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

// A payload or metadata above the server's proto-max-bulk-len is refused with
// relay.ErrPayloadTooLarge before anything is sent, on both faces; Redis
// answered an untyped "Protocol error".
func TestPayloadOverProtoMaxBulkLenIsRefused(t *testing.T) {
	e := newEnv(t)
	const limit = 1 << 20 // 1mb, the smallest value Redis accepts
	// A server at REDIS_URL is not the test's own: its limit is put back.
	old, err := e.rc.ConfigGet(ctx(t), "proto-max-bulk-len").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rc.ConfigSet(ctx(t), "proto-max-bulk-len", "1mb").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.rc.ConfigSet(c, "proto-max-bulk-len", old["proto-max-bulk-len"]).Err(); err != nil {
			t.Errorf("restore proto-max-bulk-len: %v", err)
		}
	})
	b := broker(t, e.rc, fast()...)
	p, err := redisstreams.NewPublisher(e.rc, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	big := bytes.Repeat([]byte{'x'}, limit+1)
	withMetadata := message.NewMessage("m", []byte("small"))
	withMetadata.Metadata.Set("k", string(big))
	for _, tc := range []struct {
		name    string
		publish func(topic string) error
	}{
		{"byte face", func(topic string) error { return b.Publish(ctx(t), topic, big) }},
		{"watermill payload", func(topic string) error { return p.Publish(topic, message.NewMessage("u", big)) }},
		{"watermill metadata", func(topic string) error { return p.Publish(topic, withMetadata) }},
		{"watermill batch", func(topic string) error {
			return p.Publish(topic, message.NewMessage("ok", []byte("fits")), message.NewMessage("u", big))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := e.topic(strings.ReplaceAll(tc.name, " ", "_"))
			err := tc.publish(topic)
			if !errors.Is(err, relay.ErrPayloadTooLarge) || !strings.HasPrefix(err.Error(), "redisstreams: ") {
				t.Errorf("Publish = %v; want relay.ErrPayloadTooLarge, wrapped", err)
			}
			if n := xlen(t, e.rc, topic); n != 0 {
				t.Errorf("%d entries stored; want none", n)
			}
		})
	}
	t.Run("at the limit", func(t *testing.T) {
		if err := b.Publish(ctx(t), e.topic("fits"), big[:limit]); err != nil {
			t.Errorf("Publish of exactly proto-max-bulk-len bytes = %v; want nil", err)
		}
	})
}

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
			<-failed
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

// Close against a hung Redis (SIGSTOP) returns within its documented bound:
// the last ack attempt and the clean-up share about a second, however long
// the client's own timeouts are. It took 15–20 s.
func TestCloseAgainstHungRedisIsBounded(t *testing.T) {
	redistest.RequireControl(t)
	e := newEnv(t)
	topic := e.topic("hung")
	b, err := redisstreams.NewBroker(e.rc, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	for _, name := range []string{"a", "b"} {
		if err := b.Subscribe(e.topic(name), func([]byte) error {
			once.Do(func() { close(started); <-release })
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Subscribe(topic, func([]byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	publish(t, b, e.topic("a"), "m")
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		close(release)
		b.Close()
		t.Fatal("handler not started within 10s")
	}
	if err := e.srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.srv.Resume(); err != nil {
			t.Error(err)
		}
	})
	close(release) // its XACK hangs
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close against a hung Redis took %v; want about a second", took)
	} else {
		t.Logf("Close took %v", took)
	}
}

// A client that may not run CONFIG (ACL, a managed Redis) still publishes:
// the limit is taken as the default 512 MiB, and a Warn record says so once.
func TestPayloadLimitWithoutConfigPermissionAssumesDefault(t *testing.T) {
	e := newEnv(t)
	user := strings.TrimSuffix(e.srv.KeyPrefix(), ".")
	if err := e.rc.Do(ctx(t), "ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-config").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.rc.Do(context.Background(), "ACL", "DELUSER", user) })
	opts, err := redis.ParseURL(e.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.Username, opts.Password = user, "pw"
	rc := redis.NewClient(opts)
	t.Cleanup(func() { rc.Close() })
	logs := &logRecorder{}
	b := broker(t, rc, fast(redisstreams.WithLogger(slog.New(logs)))...)
	topic := e.topic("acl")
	publish(t, b, topic, "a", "b")
	if n := xlen(t, e.rc, topic); n != 2 {
		t.Errorf("%d entries stored; want 2", n)
	}
	const msg = "cannot read proto-max-bulk-len"
	if _, ok := logs.find(slog.LevelWarn, msg); !ok {
		t.Errorf("no Warn record %q", msg)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	n := 0
	for _, r := range logs.records {
		if strings.Contains(r.Message, msg) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d records %q; want 1 (the fallback is kept)", n, msg)
	}
}
