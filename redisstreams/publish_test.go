package redisstreams_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/redisstreams"
)

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

// A Watermill message whose context is done is not stored, and Publish
// returns the context's error.
func TestWatermillPublishWithCanceledContextStoresNothing(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("canceled")
	p, err := redisstreams.NewPublisher(e.rc, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	for _, tc := range []struct {
		name string
		msgs int
	}{{"one message", 1}, {"a batch", 3}} {
		t.Run(tc.name, func(t *testing.T) {
			c, cancel := context.WithCancel(context.Background())
			cancel()
			msgs := make([]*message.Message, tc.msgs)
			for i := range msgs {
				msgs[i] = message.NewMessage("u", []byte("x"))
			}
			msgs[len(msgs)-1].SetContext(c)
			if err := p.Publish(topic, msgs...); !errors.Is(err, context.Canceled) ||
				!strings.HasPrefix(err.Error(), "redisstreams: ") {
				t.Errorf("Publish = %v; want context.Canceled, wrapped", err)
			}
			if n := xlen(t, e.rc, topic); n != 0 {
				t.Errorf("%d entries stored; want none", n)
			}
		})
	}
}
