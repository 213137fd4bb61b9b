package redisstreams_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/redisstreams"
)

// Entries written straight into a stream by another client. Those relay's
// codec cannot read (no payload field, metadata that is not a msgpack map of
// strings) go to the dead-letter stream with the decode error and their
// source, without reaching the handler; those it can (payload only, as the
// seed wrote; a 1 MiB payload with an empty metadata field; msgpack nil
// metadata) are delivered, and so is a later Publish. It guards against a
// consumer that crashes, stalls or silently drops on a foreign or corrupt
// entry.
func TestUndecodableEntryIsDeadLettered(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("foreign")
	pack := func(v any) string {
		b, err := msgpack.Marshal(v)
		require.NoError(t, err)
		return string(b)
	}
	bad := [][]any{
		{"data", "no payload field"},
		{"_watermill_message_uuid", "u1", "metadata", "\xc1corrupt", "payload", "kept"},
		{"payload", "p", "metadata", "not msgpack"},
		{"payload", "p", "metadata", pack(map[string]int{"a": 1})},
		{"payload", "p", "metadata", pack(map[int]string{1: "a"})},
		{"payload", "p", "metadata", pack([]string{"a"})},
		{"payload", "p", "metadata", "\xc1"}, // a msgpack byte never used
	}
	good := [][]any{
		{"payload", "seed-only"},
		{"payload", strings.Repeat("h", 1<<20), "_watermill_message_uuid", "u2", "metadata", ""},
		{"payload", "nil-metadata", "metadata", "\xc0"}, // msgpack nil
	}
	for _, values := range append(append([][]any{}, bad...), good...) {
		require.NoError(t, e.rc.XAdd(ctx(t), &redis.XAddArgs{Stream: topic, Values: values}).Err())
	}
	b := broker(t, e.rc, fast()...)
	var mu sync.Mutex
	handled := map[string]int{}
	require.NoError(t, b.Subscribe(topic, func(p []byte) error {
		mu.Lock()
		defer mu.Unlock()
		handled[string(p[:min(len(p), 20)])]++
		return nil
	}))
	publish(t, b, topic, "after")
	dead := topic + ".dead"
	eventually(t, 10*time.Second, "undecodable entries not dead-lettered", func() bool {
		n, err := e.rc.XLen(ctx(t), dead).Result()
		return err == nil && n == int64(len(bad))
	})
	eventually(t, 5*time.Second, "entries still pending", func() bool {
		return pendingCount(t, e.rc, topic, redisstreams.DefaultGroup) == 0
	})
	mu.Lock()
	assert.Equal(t, map[string]int{"seed-only": 1, strings.Repeat("h", 20): 1, "nil-metadata": 1, "after": 1}, handled,
		"the handler gets the readable entries once each and nothing else")
	mu.Unlock()
	sub, err := redisstreams.NewSubscriber(e.rc, fast()...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	out, err := sub.Subscribe(ctx(t), dead)
	require.NoError(t, err)
	for range bad {
		select {
		case m := <-out:
			assert.Contains(t, m.Metadata.Get(relay.MetadataReason), "decode", "dead letter reason")
			assert.Equal(t, topic, m.Metadata.Get(relay.MetadataSourceTopic), "dead letter source topic")
			assert.NotEmpty(t, m.Metadata.Get(relay.MetadataSourceID), "dead letter source id")
			if m.UUID == "u1" {
				assert.Equal(t, "kept", string(m.Payload), "dead letter of the corrupt-metadata entry")
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
