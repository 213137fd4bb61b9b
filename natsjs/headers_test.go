package natsjs_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

// Messages written by other clients: watermill-nats, plain nats.go, or
// corrupt ones.
func TestForeignMessages(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	// The stream exists once relay published to the topic.
	pub, err := natsjs.NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	topic := natstest.Topic(t, "foreign")
	if err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), []byte("relay"))); err != nil {
		t.Fatal(err)
	}
	ch, err := newSubscriber(t, js, natsjs.WithConcurrency(1)).Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	receive(t, ch, "relay's message").Ack()
	dead := deadLetters(t, js, topic)

	manyHeaders, manyMetadata := nats.Header{}, map[string]string{}
	for i := range 500 {
		manyHeaders.Set(fmt.Sprintf("k%d", i), "v")
		manyMetadata[fmt.Sprintf("k%d", i)] = "v"
	}
	cases := []struct {
		name     string
		header   nats.Header
		wantUUID string
		wantMD   map[string]string
		dead     bool
	}{
		// The unreadable ones first: had one reached the handler, a readable
		// case after it would receive it instead of its own.
		{"a header with two values", nats.Header{natsjs.UUIDHeader: {"uuid-2"}, "k": {"a", "b"}}, "", nil, true},
		{"the UUID header with two values", nats.Header{natsjs.UUIDHeader: {"a", "b"}}, "", nil, true},
		{"written like watermill-nats", nats.Header{
			natsjs.UUIDHeader: {"uuid-1"}, "Nats-Msg-Id": {"uuid-1"}, "trace_id": {"t-1"},
		}, "uuid-1", map[string]string{"trace_id": "t-1"}, false},
		{"no headers at all", nil, "", map[string]string{}, false},
		{"no UUID, other headers", nats.Header{"k": {"v"}}, "", map[string]string{"k": "v"}, false},
		{"empty header values", nats.Header{natsjs.UUIDHeader: {""}, "e": {""}}, "", map[string]string{"e": ""}, false},
		{"500 headers", manyHeaders, "", manyMetadata, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			payload := []byte("payload of " + c.name)
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: topic, Header: c.header, Data: payload}); err != nil {
				t.Fatal(err)
			}
			if c.dead {
				dl := receive(t, dead, "dead letter")
				dl.Ack()
				if reason := dl.Metadata.Get(relay.MetadataReason); !strings.Contains(reason, "several values") {
					t.Errorf("dead letter reason %q, want the decode error", reason)
				}
				if !bytes.Equal(dl.Payload, payload) {
					t.Errorf("dead letter payload %q, want %q", dl.Payload, payload)
				}
				return
			}
			m := receive(t, ch, "foreign message")
			m.Ack()
			if m.UUID != c.wantUUID {
				t.Errorf("UUID %q, want %q", m.UUID, c.wantUUID)
			}
			if fmt.Sprint(map[string]string(m.Metadata)) != fmt.Sprint(c.wantMD) {
				t.Errorf("metadata %v, want %v", m.Metadata, c.wantMD)
			}
			if !bytes.Equal(m.Payload, payload) {
				t.Errorf("payload %q, want %q", m.Payload, payload)
			}
		})
	}
}

// rawHPUB publishes with the raw protocol, so that a header name nats.go
// refuses reaches the server.
func rawHPUB(t *testing.T, url, subject, hdr, payload string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "nats://"), wait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil { // INFO
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\n")
	fmt.Fprintf(conn, "HPUB %s %d %d\r\n%s%s\r\nPING\r\n", subject, len(hdr), len(hdr)+len(payload), hdr, payload)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "PONG") {
		t.Fatalf("raw HPUB: %q %v", line, err)
	}
}

// A message stored by another client with a header name nats.go refuses to
// send decodes fine; its dead letter leaves the header out and says so,
// rather than failing to encode forever.
func TestDeadLetterLeavesOutForeignHeaderNames(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	topic := natstest.Topic(t, "oddkey")
	b := newBroker(t, js, natsjs.WithMaxDeliver(1))
	publish(t, b, topic, []byte("creates the stream"))
	dead := deadLetters(t, js, topic)
	if err := b.Subscribe(topic, func(p []byte) error {
		if string(p) == "creates the stream" {
			return nil
		}
		return errors.New("fails")
	}); err != nil {
		t.Fatal(err)
	}
	rawHPUB(t, s.URL(), topic, "NATS/1.0\r\na/b: 1\r\nnats-lower: 2\r\nkept: 3\r\n\r\n", "odd")
	dl := receive(t, dead, "dead letter of the message with a foreign header name")
	dl.Ack()
	if string(dl.Payload) != "odd" || dl.Metadata.Get("kept") != "3" || dl.Metadata.Get("a/b") != "" {
		t.Errorf("dead letter %q metadata %v, want payload odd, kept=3, no a/b", dl.Payload, dl.Metadata)
	}
	if reason := dl.Metadata.Get(relay.MetadataReason); !strings.Contains(reason, "fails") || !strings.Contains(reason, `"a/b"`) {
		t.Errorf("dead letter reason %q, want the error and the left-out key", reason)
	}
}

// A metadata key starting with "Nats-" would be a JetStream header
// (Nats-Expected-Stream, Nats-TTL, ...): Publish refuses it, naming it.
func TestPublishRefusesJetStreamHeaderMetadata(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	pub, err := natsjs.NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"Nats-Expected-Stream", "nats-ttl", "a/b", natsjs.UUIDHeader} {
		t.Run(key, func(t *testing.T) {
			m := message.NewMessage(watermill.NewUUID(), []byte("x"))
			m.Metadata.Set(key, "v")
			err := pub.Publish(natstest.Topic(t, "meta"), m)
			if err == nil || !strings.Contains(err.Error(), strconv.Quote(key)) {
				t.Errorf("Publish with metadata key %q = %v, want an error naming it", key, err)
			}
		})
	}
}
