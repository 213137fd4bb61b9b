package natsjs_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/natstest"
	"github.com/go-relay/relay/natsjs"
)

// Close used to cancel the pull request in progress, and nats.go dropped the
// messages the server had already sent for it: they came back only after
// the ack wait. Every message fetched and not handled must come back at once.
func TestCloseNaksMessagesOfAnInterruptedFetch(t *testing.T) {
	s := natstest.Start(t)
	nc, js := connect(t, s)
	natstest.RequireServerAtLeast(t, nc, "2.10.14", "a Nak'd message that finds only a pull request without interest "+
		"waits for the ack wait there (server defect fixed in v2.10.14; see natsjs/pull.go)")
	topic := natstest.Topic(t, "interrupted")
	const (
		n      = 1500
		rounds = 6
	)
	opts := []natsjs.Option{natsjs.WithGroup("g"), natsjs.WithAckWait(time.Minute), natsjs.WithConcurrency(32)}
	pub := newBroker(t, js, natsjs.WithGroup("producer"))
	filler := bytes.Repeat([]byte{'.'}, 8<<10) // large messages: a pull request takes a while to arrive
	for i := range n {
		publish(t, pub, topic, append([]byte(strconv.Itoa(i)+" "), filler...))
	}
	var mu sync.Mutex
	handled := map[string]bool{}
	handler := func(p []byte) error {
		time.Sleep(2 * time.Millisecond)
		id, _, _ := bytes.Cut(p, []byte(" "))
		mu.Lock()
		handled[string(id)] = true
		mu.Unlock()
		return nil
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(handled) }
	// Brokers close one after the other, under load, so that some Close
	// interrupts a pull request; a last one must get the rest well within
	// the ack wait.
	for range rounds {
		_, jsR := connect(t, s)
		b := newBroker(t, jsR, opts...)
		if err := b.Subscribe(topic, handler); err != nil {
			t.Fatal(err)
		}
		goal := min(n, count()+n/(2*rounds))
		eventually(t, func() bool { return count() >= goal }, "messages handled before Close")
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	_, jsLast := connect(t, s)
	if err := newBroker(t, jsLast, opts...).Subscribe(topic, handler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second) // the ack wait is a minute
	for count() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := count(); got < n {
		t.Errorf("%d of %d messages handled within 10 s: Close left fetched messages leased until the ack wait", got, n)
	}
}

// A handler that calls runtime.Goexit (t.FailNow in a handler) still has its
// delivery settled, and its worker is replaced: with concurrency 1 the next
// message is delivered.
func TestHandlerGoexitIsSettledAndItsWorkerReplaced(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	topic := natstest.Topic(t, "goexit")
	b := newBroker(t, js, natsjs.WithConcurrency(1), natsjs.WithPrefetch(0), natsjs.WithMaxDeliver(5),
		natsjs.WithBackoff(10*time.Millisecond, 20*time.Millisecond))
	var exits, other atomic.Int32
	if err := b.Subscribe(topic, func(p []byte) error {
		if string(p) == "other" {
			other.Add(1)
			return nil
		}
		if exits.Add(1) == 1 {
			runtime.Goexit()
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, []byte("exit"))
	publish(t, b, topic, []byte("other"))
	eventually(t, func() bool { return exits.Load() >= 2 }, "the delivery whose handler called Goexit redelivered")
	eventually(t, func() bool { return other.Load() == 1 }, "the next message delivered by a replaced worker")
	eventually(t, func() bool { return consumerSettled(t, js, topic, natsjs.DefaultGroup) }, "both acknowledged")
}

// A topic whose dead-letter topic is invalid would leave a failing message
// nowhere to go: Subscribe refuses it on both faces.
func TestSubscribeRefusesInvalidDeadLetterTopic(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	long := strings.Repeat("t", relay.MaxTopicLength)
	cases := []struct {
		name  string
		topic string
		opts  []natsjs.Option
	}{
		{"a 255-byte topic plus .dead is too long", long, nil},
		{"a wildcard dead-letter topic", "orders", []natsjs.Option{natsjs.WithDeadLetterTopic(func(string) string { return "orders.*" })}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := newBroker(t, js, c.opts...).Subscribe(c.topic, func([]byte) error { return nil })
			if !errors.Is(err, relay.ErrInvalidTopic) {
				t.Errorf("Broker.Subscribe = %v, want ErrInvalidTopic", err)
			}
			_, err = newSubscriber(t, js, c.opts...).Subscribe(t.Context(), c.topic)
			if !errors.Is(err, relay.ErrInvalidTopic) {
				t.Errorf("Subscriber.Subscribe = %v, want ErrInvalidTopic", err)
			}
		})
	}
}

// A message as large as Publish accepts gets a dead letter that fits, even
// with a long reason: the reason is cut.
func TestDeadLetterOfLargestAcceptedMessageLands(t *testing.T) {
	s := natstest.Start(t, natstest.Config{MaxPayload: 64 << 10})
	nc, js := connect(t, s)
	limit := int(nc.MaxPayload()) // an external server has its own
	topic := natstest.Topic(t, "big")
	dead := deadLetters(t, js, topic)
	b := newBroker(t, js, natsjs.WithMaxDeliver(1))
	const headers = 10 + (len(natsjs.UUIDHeader) + 2 + 36 + 2) + (len("Nats-Msg-Id") + 2 + 36 + 2) + 2
	payload := bytes.Repeat([]byte("z"), limit-natsjs.DeadLetterReserve-headers)
	publish(t, b, topic, payload)
	longReason := strings.Repeat("very long reason ", 1000)
	if err := b.Subscribe(topic, func([]byte) error { return errors.New(longReason) }); err != nil {
		t.Fatal(err)
	}
	dl := receive(t, dead, "dead letter of the largest message")
	dl.Ack()
	if !bytes.Equal(dl.Payload, payload) {
		t.Errorf("dead letter payload of %d bytes, want %d", len(dl.Payload), len(payload))
	}
	reason := dl.Metadata.Get(relay.MetadataReason)
	if !strings.HasPrefix(reason, "very long reason") || !strings.HasSuffix(reason, "...") || len(reason) >= len(longReason) {
		t.Errorf("dead letter reason of %d bytes (%.40q...), want the reason cut", len(reason), reason)
	}
	eventually(t, func() bool { return consumerSettled(t, js, topic, natsjs.DefaultGroup) }, "source acknowledged")
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

func TestSubscribeInitializeAfterCloseIsErrClosed(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	sub := newSubscriber(t, js)
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sub.SubscribeInitialize("orders"); !errors.Is(err, relay.ErrClosed) {
		t.Errorf("SubscribeInitialize after Close = %v, want ErrClosed", err)
	}
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A handler failure that will be retried logs at Debug; a dead letter at
// Warn with its details.
func TestLogLevels(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	topic := natstest.Topic(t, "logged")
	var out syncBuffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := newBroker(t, js, natsjs.WithLogger(log), natsjs.WithMaxDeliver(2), natsjs.WithBackoff(10*time.Millisecond, 20*time.Millisecond))
	if err := b.Subscribe(topic, func([]byte) error { return errors.New("boom") }); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, []byte("x"))
	eventually(t, func() bool { return strings.Contains(out.String(), "dead-lettered") }, "dead letter logged")
	var debug, warn string
	for line := range strings.Lines(out.String()) {
		switch {
		case strings.Contains(line, "handler failed"):
			debug = line
		case strings.Contains(line, "dead-lettered"):
			warn = line
		}
	}
	if !strings.Contains(debug, "level=DEBUG") || !strings.Contains(debug, "boom") {
		t.Errorf("handler failure logged as %q, want Debug with the error", debug)
	}
	for _, want := range []string{"level=WARN", "topic=" + topic, "id=1", "attempts=2", "reason=boom", "dead_letter_topic=" + topic + ".dead"} {
		if !strings.Contains(warn, want) {
			t.Errorf("dead letter logged as %q, want %q in it", warn, want)
		}
	}
}

// Shutdown gives up on a handler that does not return once its context is
// done; the message stays pending and, its lease no longer extended, goes to
// another member of the group after the ack wait.
func TestShutdownIsBoundedAndLeavesRunningHandlersPending(t *testing.T) {
	s := natstest.Start(t)
	topic := natstest.Topic(t, "stuck")
	const ackWait = time.Second
	opts := []natsjs.Option{natsjs.WithGroup("g"), natsjs.WithAckWait(ackWait)}
	_, jsA := connect(t, s)
	a := newBroker(t, jsA, opts...)
	entered := make(chan struct{})
	release := make(chan struct{})
	if err := a.Subscribe(topic, func([]byte) error { close(entered); <-release; return errors.New("too late") }); err != nil {
		t.Fatal(err)
	}
	publish(t, a, topic, []byte("x"))
	select {
	case <-entered:
	case <-time.After(wait):
		close(release)
		t.Fatalf("handler not entered within %v", wait)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := a.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a blocked handler = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v, want about its 200 ms bound", d)
	}
	if err := a.Publish(context.Background(), topic, []byte("y")); !errors.Is(err, relay.ErrClosed) {
		t.Errorf("Publish after Shutdown = %v, want ErrClosed", err)
	}
	_, jsB := connect(t, s)
	got := make(chan string, 10)
	if err := newBroker(t, jsB, opts...).Subscribe(topic, func(p []byte) error { got <- string(p); return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != "x" {
			t.Errorf("got %q, want x", p)
		}
	case <-time.After(wait):
		t.Fatal("the message of the abandoned handler was not redelivered")
	}
	close(release)
	if err := a.Close(); err != nil { // waits for the released handler
		t.Fatal(err)
	}
}

// The exported defaults are the shared ones (also checked at compile time).
func TestDefaultsAreTheSharedOnes(t *testing.T) {
	if natsjs.DefaultMaxDeliver != delivery.DefaultMaxDeliver || natsjs.DefaultMinBackoff != delivery.DefaultMinBackoff ||
		natsjs.DefaultMaxBackoff != delivery.DefaultMaxBackoff {
		t.Error("natsjs defaults differ from internal/delivery's")
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
