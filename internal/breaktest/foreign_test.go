package breaktest_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/natsjs"
)

// TestRedisUnreadableEntriesAreDeadLetteredAndReadableOnesDelivered writes
// foreign entries straight into a stream: six that relay's codec cannot read
// (no payload field, metadata that is not a msgpack map of strings) and three
// that it can (payload only, as the seed wrote; a 1 MiB payload with an empty
// metadata field; msgpack nil metadata). Each unreadable entry goes to the
// dead-letter topic with a reason and the source topic, without reaching the
// handler; the readable ones and a later Publish are delivered. It guards
// against a consumer that crashes, stalls or silently drops on a foreign or
// corrupt entry.
func TestRedisUnreadableEntriesAreDeadLetteredAndReadableOnesDelivered(t *testing.T) {
	e := redisEnv(t)
	topic := e.topic("foreign")
	ctx := context.Background()
	wrongType, _ := msgpack.Marshal(map[string]int{"a": 1})
	intKeys, _ := msgpack.Marshal(map[int]string{1: "a"})
	list, _ := msgpack.Marshal([]string{"a"})
	bad := []map[string]any{
		{"other": "x"}, // no payload
		{"payload": "p", "metadata": "not msgpack"}, // garbage metadata
		{"payload": "p", "metadata": string(wrongType)},
		{"payload": "p", "metadata": string(intKeys)},
		{"payload": "p", "metadata": string(list)},
		{"payload": "p", "metadata": "\xc1"}, // never-used msgpack byte
	}
	good := []map[string]any{
		{"payload": "seed-only"},
		{"payload": strings.Repeat("h", 1<<20), "_watermill_message_uuid": "u", "metadata": ""},
		{"payload": "p", "metadata": "\xc0"}, // msgpack nil
	}
	for _, v := range append(bad, good...) {
		must(t, e.rc.XAdd(ctx, &redis.XAddArgs{Stream: topic, Values: v}).Err())
	}
	dead := watchDead(t, e, topic+".dead")
	b := e.broker(t, cfg{})
	c := newCollector()
	must(t, b.Subscribe(topic, c.handler))
	pubCtx(t, b, topic, []byte("after"))
	if !c.waitN(t, len(good)+1, 10*time.Second) {
		t.Errorf("delivered %d of %d good entries", c.n(), len(good)+1)
	}
	got := 0
	deadline := time.After(10 * time.Second)
	for got < len(bad) {
		select {
		case m := <-dead:
			got++
			if m.Metadata.Get(relay.MetadataReason) == "" {
				t.Errorf("dead letter without reason")
			}
			if src := m.Metadata.Get(relay.MetadataSourceTopic); src != topic {
				t.Errorf("dead letter source topic %q, want %q", src, topic)
			}
		case <-deadline:
			t.Fatalf("dead-lettered %d of %d corrupt entries", got, len(bad))
		}
	}
	if n := c.n(); n > len(good)+1 {
		t.Errorf("corrupt entries were delivered to the handler: %d deliveries", n)
	}
}

// TestNATSMultiValueHeadersAreDeadLetteredAndOthersDelivered stores messages
// with foreign headers through JetStream directly: a header with several
// values (the UUID header or another) cannot be read as metadata and goes to
// the dead-letter topic with the decode error, without reaching the handler;
// empty header values and 500 headers are read and delivered. It guards
// against a consumer that crashes on, loops on or silently drops such
// messages.
func TestNATSMultiValueHeadersAreDeadLetteredAndOthersDelivered(t *testing.T) {
	e := natsEnv(t)
	topic := e.topic("foreign")
	b := e.broker(t, cfg{maxDeliver: 2})
	pubCtx(t, b, topic, []byte("first")) // creates the stream
	dead := watchDead(t, e, topic+".dead")
	var calls atomic.Int32
	c := newCollector()
	must(t, b.Subscribe(topic, func(p []byte) error {
		calls.Add(1)
		return c.handler(p)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	send := func(h nats.Header, data string) {
		t.Helper()
		if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: topic, Header: h, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	send(nats.Header{"_watermill_message_uuid": {"a", "b"}}, "dup-uuid")          // bad: 2 values
	send(nats.Header{"x": {"1", "2"}}, "dup-x")                                   // bad
	send(nats.Header{"_watermill_message_uuid": {""}, "e": {""}}, "empty-values") // good
	many := nats.Header{}
	for i := 0; i < 500; i++ {
		many.Set(fmt.Sprintf("k%d", i), "v")
	}
	send(many, "many-headers") // good
	if !c.waitN(t, 3, 10*time.Second) {
		t.Errorf("delivered %d of 3 readable messages within 10s", c.n())
	}
	wantDead := map[string]bool{"dup-uuid": true, "dup-x": true}
	for len(wantDead) > 0 {
		select {
		case m := <-dead:
			if !wantDead[string(m.Payload)] {
				t.Errorf("unexpected dead letter %q (reason %q)", m.Payload, m.Metadata.Get(relay.MetadataReason))
				continue
			}
			delete(wantDead, string(m.Payload))
			if m.Metadata.Get(relay.MetadataReason) == "" {
				t.Errorf("dead letter %q without reason", m.Payload)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("not dead-lettered within 10s: %v; handler calls=%d", wantDead, calls.Load())
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.got {
		if strings.HasPrefix(string(p), "dup-") {
			t.Errorf("unreadable message %q reached the handler", p)
		}
	}
}

// TestNATSForeignHeaderNameDoesNotBlockDeadLetter stores a message, through a
// raw HPUB that the server accepts, with a header name that nats.go refuses
// to send ("a/b"). When its handler fails for good it reaches the dead-letter
// topic, the key left out and the reason saying so. It guards against a dead
// letter that cannot be encoded ("metadata key cannot be a NATS header"),
// which left the message redelivered forever.
func TestNATSForeignHeaderNameDoesNotBlockDeadLetter(t *testing.T) {
	e := natsEnv(t)
	topic := e.topic("oddkey")
	b := e.broker(t, cfg{maxDeliver: 2})
	pubCtx(t, b, topic, []byte("first")) // creates the stream
	dead := watchDead(t, e, topic+".dead")
	var calls atomic.Int32
	must(t, b.Subscribe(topic, func(p []byte) error {
		if string(p) == "first" {
			return nil
		}
		calls.Add(1)
		return relay.Permanent(fmt.Errorf("fail"))
	}))
	rawHPUB(t, e.ns.URL(), topic, "NATS/1.0\r\na/b: 1\r\n\r\n", "raw-odd-key")
	select {
	case m := <-dead:
		if string(m.Payload) != "raw-odd-key" {
			t.Errorf("dead letter payload %q, want %q", m.Payload, "raw-odd-key")
		}
		if r := m.Metadata.Get(relay.MetadataReason); !strings.Contains(r, "a/b") {
			t.Errorf("dead letter reason %q does not name the left-out key %q", r, "a/b")
		}
	case <-time.After(10 * time.Second):
		cons, err := e.js.Consumer(t.Context(), natsjs.StreamName(topic), natsjs.ConsumerName("g"))
		must(t, err)
		info, err := cons.Info(t.Context())
		must(t, err)
		t.Errorf("message with foreign header name %q not dead-lettered within 10s: handler calls=%d, JetStream deliveries=%d, ack pending=%d",
			"a/b", calls.Load(), info.Delivered.Consumer, info.NumAckPending)
	}
}

// rawHPUB publishes payload with the raw header block hdr on subject over a
// bare TCP connection, bypassing nats.go's header checks.
func rawHPUB(t *testing.T, url, subject, hdr, payload string) {
	t.Helper()
	addr := strings.TrimPrefix(url, "nats://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	must(t, err)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil { // INFO
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\n")
	fmt.Fprintf(conn, "HPUB %s %d %d\r\n%s%s\r\nPING\r\n", subject, len(hdr), len(hdr)+len(payload), hdr, payload)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "PONG") {
		t.Fatalf("raw HPUB: %q %v", line, err)
	}
}
