package benchmarks_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay/benchmarks"
	"github.com/go-relay/relay/natsjs"
)

// TestRawWireWritesRelaysFormat checks that the raw-wire face stores what
// relay's byte face stores for a message without metadata, so that relay ÷
// raw-wire compares code doing the same wire work: on Redis the same fields in
// the same order with the same metadata value, on NATS the same headers, the
// UUID in both of relay's.
func TestRawWireWritesRelaysFormat(t *testing.T) {
	payload := []byte("wire payload")
	t.Run("redis", func(t *testing.T) {
		addr := server(t, "REDIS", env.Redis)
		c := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { c.Close() })
		entry := func(face string) []any {
			return storedBy(t, "redis", face, payload, func(ctx context.Context, topic string) ([]any, error) {
				entries, err := c.Do(ctx, "XRANGE", topic, "-", "+").Slice()
				if err != nil {
					return nil, err
				}
				if len(entries) != 1 {
					return nil, fmt.Errorf("%d entries, want 1", len(entries))
				}
				e, ok := entries[0].([]any)
				if !ok || len(e) != 2 {
					return nil, fmt.Errorf("entry %#v is not [id, fields]", entries[0])
				}
				fields, ok := e[1].([]any)
				if !ok {
					return nil, fmt.Errorf("fields %#v are not a list", e[1])
				}
				return fields, nil
			})
		}
		relay, wire := entry(benchmarks.FaceBytes), entry(benchmarks.FaceRawWire)
		if len(relay) != len(wire) {
			t.Fatalf("raw-wire wrote %q, relay %q", wire, relay)
		}
		for i := 0; i < len(relay); i += 2 {
			name := relay[i]
			if wire[i] != name {
				t.Errorf("field %d: raw-wire %q, relay %q", i/2, wire[i], name)
			}
			if name == "_watermill_message_uuid" {
				if len(wire[i+1].(string)) != len(relay[i+1].(string)) || wire[i+1] == relay[i+1] {
					t.Errorf("uuid: raw-wire %q, relay %q: want another of the same form", wire[i+1], relay[i+1])
				}
			} else if wire[i+1] != relay[i+1] {
				t.Errorf("field %q: raw-wire %q, relay %q", name, wire[i+1], relay[i+1])
			}
		}
	})
	t.Run("nats", func(t *testing.T) {
		url := server(t, "NATS", env.NATS)
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		stored := func(face string, streamOf func(topic string) string) nats.Header {
			return storedBy(t, "nats", face, payload, func(ctx context.Context, topic string) (nats.Header, error) {
				st, err := js.Stream(ctx, streamOf(topic))
				if err != nil {
					return nil, err
				}
				m, err := st.GetLastMsgForSubject(ctx, topic)
				if err != nil {
					return nil, err
				}
				return m.Header, nil
			})
		}
		relay := stored(benchmarks.FaceBytes, natsjs.StreamName)
		wire := stored(benchmarks.FaceRawWire, func(topic string) string { return topic })
		if got, want := slices.Sorted(maps.Keys(wire)), slices.Sorted(maps.Keys(relay)); !slices.Equal(got, want) {
			t.Fatalf("raw-wire headers %q, relay %q", got, want)
		}
		for _, h := range []nats.Header{relay, wire} {
			if id := h.Get(natsjs.UUIDHeader); id == "" || h.Get(nats.MsgIdHdr) != id {
				t.Errorf("headers %q: want the UUID in %s and %s", h, natsjs.UUIDHeader, nats.MsgIdHdr)
			}
		}
		if wire.Get(natsjs.UUIDHeader) == relay.Get(natsjs.UUIDHeader) {
			t.Error("raw-wire and relay stored the same UUID")
		}
	})
}

// storedBy publishes payload once on face of system and returns what read
// finds on the server before the session deletes its topic.
func storedBy[T any](t *testing.T, system, face string, payload []byte, read func(ctx context.Context, topic string) (T, error)) T {
	t.Helper()
	i := slices.IndexFunc(benchmarks.Impls(), func(i benchmarks.Impl) bool { return i.System == system && i.Face == face })
	if i < 0 {
		t.Fatalf("no implementation %s/%s", system, face)
	}
	impl := benchmarks.Impls()[i]
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	topic := benchmarks.NewTopic(impl, "wire")
	sess, err := impl.Open(ctx, env, benchmarks.SessionConfig{Topic: topic})
	if err != nil {
		t.Fatalf("%s: open: %v", impl.Name(), err)
	}
	defer func() {
		if err := sess.Close(); err != nil {
			t.Errorf("%s: close: %v", impl.Name(), err)
		}
	}()
	if err := sess.Publish(ctx, payload); err != nil {
		t.Fatalf("%s: publish: %v", impl.Name(), err)
	}
	got, err := read(ctx, topic)
	if err != nil {
		t.Fatalf("%s: read: %v", impl.Name(), err)
	}
	return got
}
