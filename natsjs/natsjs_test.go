package natsjs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/natstest"
	"github.com/go-relay/relay/natsjs"
)

const wait = 15 * time.Second // bound of every wait for something that must happen

// testLogger writes the brokers' background log to the test log.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func connect(t *testing.T, s *natstest.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc := natstest.Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func newBroker(t *testing.T, js jetstream.JetStream, opts ...natsjs.Option) *natsjs.Broker {
	t.Helper()
	b, err := natsjs.NewBroker(js, append([]natsjs.Option{natsjs.WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() }) // Close always returns nil
	return b
}

func newSubscriber(t *testing.T, js jetstream.JetStream, opts ...natsjs.Option) *natsjs.Subscriber {
	t.Helper()
	s, err := natsjs.NewSubscriber(js, append([]natsjs.Option{natsjs.WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func publish(t *testing.T, b relay.Broker, topic string, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := b.Publish(ctx, topic, payload); err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
}

func receive(t *testing.T, ch <-chan *message.Message, what string) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
		return m
	case <-time.After(wait):
		t.Fatalf("%s: nothing within %v", what, wait)
		return nil
	}
}

// eventually polls cond every 10 ms until it holds, failing t after wait.
func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", wait, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pollUntil reports whether cond became true within d.
func pollUntil(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// checkQuiet fails t if cond becomes true within d.
func checkQuiet(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			t.Fatalf("within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The seed created a topic's stream only on Subscribe, so messages published
// before were refused or lost.
func TestPublishBeforeSubscribeIsDelivered(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	topic := natstest.Topic(t, "orders.placed")
	pub := newBroker(t, js, natsjs.WithGroup("publisher-only"))
	want := []string{"one", "two", "three"}
	for _, p := range want {
		publish(t, pub, topic, []byte(p))
	}
	var mu sync.Mutex
	var got []string
	_, js2 := connect(t, s)
	sub := newBroker(t, js2, natsjs.WithGroup("late"), natsjs.WithConcurrency(1))
	if err := sub.Subscribe(topic, func(p []byte) error {
		mu.Lock()
		got = append(got, string(p))
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == len(want) }, "all messages published before Subscribe")
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got %q, want %q", got, want)
	}
}

// The seed answered a failure with Nak without delay: JetStream redelivered at
// once, in a hot loop.
func TestFailingHandlerIsNotAHotLoop(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	const (
		minBackoff = 200 * time.Millisecond
		maxBackoff = time.Second
		watch      = 4 * time.Second
	)
	b := newBroker(t, js, natsjs.WithMaxDeliver(1000), natsjs.WithBackoff(minBackoff, maxBackoff))
	var mu sync.Mutex
	var at []time.Time
	topic := natstest.Topic(t, "always.fails")
	if err := b.Subscribe(topic, func([]byte) error {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		return errors.New("induced failure")
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, []byte("x"))
	eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(at) > 0 }, "first delivery")
	mu.Lock()
	first := at[0]
	mu.Unlock()
	time.Sleep(time.Until(first.Add(watch)))
	mu.Lock()
	defer mu.Unlock()
	n := len(at)
	rate := float64(n) / watch.Seconds()
	t.Logf("always-failing handler: %d deliveries in %v = %.2f deliveries/second (backoff %v..%v)", n, watch, rate, minBackoff, maxBackoff)
	// The backoff allows, from the first delivery: 100-200ms, 200-400ms,
	// 400-800ms, then 500ms-1s per delivery: at most 9 in 4 s.
	if n > 9 {
		t.Errorf("%d deliveries in %v (%.1f/s): faster than the backoff allows", n, watch, rate)
	}
	if n < 3 {
		t.Errorf("%d deliveries in %v: the failing message is not retried while the consumer runs", n, watch)
	}
	for i := 1; i < n; i++ {
		if gap := at[i].Sub(at[i-1]); gap < minBackoff/2 {
			t.Errorf("delivery %d came %v after the previous one, want at least %v", i+1, gap, minBackoff/2)
		}
	}
}

// deadLetters subscribes to topic's dead-letter topic on the Watermill face,
// which shows the dead letter's metadata.
func deadLetters(t *testing.T, js jetstream.JetStream, topic string) <-chan *message.Message {
	t.Helper()
	ch, err := newSubscriber(t, js, natsjs.WithGroup("dead-letter-reader")).Subscribe(t.Context(), topic+".dead")
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func checkDeadLetter(t *testing.T, dl *message.Message, topic, id, attempts, reason string, payload []byte) {
	t.Helper()
	for key, want := range map[string]string{
		relay.MetadataSourceTopic: topic,
		relay.MetadataSourceID:    id,
		relay.MetadataAttempts:    attempts,
	} {
		if got := dl.Metadata.Get(key); got != want {
			t.Errorf("dead letter metadata %s = %q, want %q", key, got, want)
		}
	}
	if got := dl.Metadata.Get(relay.MetadataReason); !strings.Contains(got, reason) {
		t.Errorf("dead letter reason %q does not contain %q", got, reason)
	}
	if !bytes.Equal(dl.Payload, payload) {
		t.Errorf("dead letter payload %q, want %q", dl.Payload, payload)
	}
}

// consumerSettled reports whether the group's consumer on topic has nothing
// pending nor unacknowledged.
func consumerSettled(t *testing.T, js jetstream.JetStream, topic, group string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := js.Consumer(ctx, natsjs.StreamName(topic), natsjs.ConsumerName(group))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.NumAckPending == 0 && info.NumPending == 0 && info.NumRedelivered == 0
}

// The seed let JetStream's MaxDeliver drop a failing message: no dead letter.
func TestDeadLetterAfterMaxDeliver(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	topic := natstest.Topic(t, "payments")
	dead := deadLetters(t, js, topic)
	b := newBroker(t, js, natsjs.WithMaxDeliver(3), natsjs.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	var calls atomic.Int32
	if err := b.Subscribe(topic, func([]byte) error {
		calls.Add(1)
		return errors.New("card declined")
	}); err != nil {
		t.Fatal(err)
	}
	payload := []byte("pay \x00\xff 10")
	publish(t, b, topic, payload)
	dl := receive(t, dead, "dead letter")
	dl.Ack()
	checkDeadLetter(t, dl, topic, "1", "3", "card declined", payload)
	if n := calls.Load(); n != 3 {
		t.Errorf("handler called %d times, want 3", n)
	}
	eventually(t, func() bool { return consumerSettled(t, js, topic, natsjs.DefaultGroup) }, "source message acknowledged after its dead letter")
}

// With the consumer's MaxDeliver set to max deliver (the seed), a consumer
// that dies during the last attempt leaves the message unacknowledged and the
// server never delivers it again. relay delivers it once more after the ack
// wait: the handler decides, and a failure is dead-lettered at once.
func TestConsumerDeathDuringLastAttemptIsHandledOnceMore(t *testing.T) {
	cases := []struct {
		name     string
		result   error
		wantDead bool
	}{
		{"the handler succeeds: acknowledged, no dead letter", nil, false},
		{"the handler fails: dead-lettered at once", errors.New("still failing"), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := natstest.Start(t)
			topic := natstest.Topic(t, "shipments")
			const ackWait = time.Second
			opts := []natsjs.Option{
				natsjs.WithGroup("shipping"),
				natsjs.WithMaxDeliver(2),
				natsjs.WithAckWait(ackWait),
				natsjs.WithBackoff(10*time.Millisecond, 20*time.Millisecond),
			}
			ncA, jsA := connect(t, s)
			a := newBroker(t, jsA, opts...)
			lastAttempt := make(chan struct{})
			release := make(chan struct{})
			var attemptsA atomic.Int32
			if err := a.Subscribe(topic, func([]byte) error {
				if attemptsA.Add(1) == 1 {
					return errors.New("first attempt fails")
				}
				close(lastAttempt)
				<-release // the consumer "dies" while its handler runs
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			_, js := connect(t, s)
			dead := deadLetters(t, js, topic)
			publish(t, newBroker(t, js, natsjs.WithGroup("producer")), topic, []byte("parcel"))
			select {
			case <-lastAttempt:
			case <-time.After(wait):
				t.Fatal("broker A did not get the last attempt")
			}
			ncA.Close() // A can neither ack nor extend its lease any more
			defer func() {
				close(release)
				_ = a.Close()
			}()

			_, jsB := connect(t, s)
			b := newBroker(t, jsB, opts...)
			var callsB atomic.Int32
			if err := b.Subscribe(topic, func([]byte) error { callsB.Add(1); return c.result }); err != nil {
				t.Fatal(err)
			}
			eventually(t, func() bool { return callsB.Load() > 0 }, "broker B handles the abandoned last attempt")
			if c.wantDead {
				dl := receive(t, dead, "dead letter of the failed extra attempt")
				dl.Ack()
				checkDeadLetter(t, dl, topic, "1", "3", "still failing", []byte("parcel"))
			} else {
				select {
				case dl := <-dead:
					t.Errorf("dead letter %q after a successful extra attempt", dl.Payload)
				case <-time.After(2 * ackWait):
				}
			}
			eventually(t, func() bool { return consumerSettled(t, js, topic, "shipping") }, "source message acknowledged")
			if n := callsB.Load(); n != 1 {
				t.Errorf("broker B's handler called %d times, want 1", n)
			}
		})
	}
}

// Without lease extension, a handler slower than the ack wait has its message
// delivered again to another consumer while it still runs.
func TestSlowHandlerIsNotDeliveredTwice(t *testing.T) {
	s := natstest.Start(t)
	topic := natstest.Topic(t, "reports")
	const ackWait = time.Second
	opts := []natsjs.Option{natsjs.WithGroup("reporting"), natsjs.WithAckWait(ackWait)}
	var calls atomic.Int32
	var done atomic.Bool
	handler := func([]byte) error {
		calls.Add(1)
		time.Sleep(3 * ackWait)
		done.Store(true)
		return nil
	}
	for range 2 { // two consumers of the group: a redelivery could go to either
		_, js := connect(t, s)
		if err := newBroker(t, js, opts...).Subscribe(topic, handler); err != nil {
			t.Fatal(err)
		}
	}
	_, js := connect(t, s)
	publish(t, newBroker(t, js, natsjs.WithGroup("producer")), topic, []byte("quarterly"))
	eventually(t, done.Load, "slow handler finished")
	checkQuiet(t, 2*ackWait, func() bool { return calls.Load() > 1 }, "message delivered again")
	if n := calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
	eventually(t, func() bool { return consumerSettled(t, js, topic, "reporting") }, "message acknowledged")
}

// The header overhead of the byte face counts against max_payload, as does
// the room kept for the metadata of a dead letter.
func TestPayloadLimitCountsHeaders(t *testing.T) {
	// An external server has its own max_payload: the sizes follow the
	// server's, which the client learnt from its INFO.
	s := natstest.Start(t, natstest.Config{MaxPayload: 64 << 10})
	nc, js := connect(t, s)
	b := newBroker(t, js)
	limit := int(nc.MaxPayload())
	// "NATS/1.0\r\n", the UUID and Nats-Msg-Id headers of 36-byte UUIDs, "\r\n".
	const headers = 10 + (len(natsjs.UUIDHeader) + 2 + 36 + 2) + (len("Nats-Msg-Id") + 2 + 36 + 2) + 2
	most := limit - natsjs.DeadLetterReserve - headers
	cases := []struct {
		name    string
		size    int
		tooLong bool
	}{
		{"payload, headers and dead-letter reserve exactly at the limit", most, false},
		{"one byte over", most + 1, true},
		{"within max_payload but into the dead-letter reserve", limit - headers, true},
		{"far over", 4 * limit, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			err := b.Publish(ctx, natstest.Topic(t, "sized"), make([]byte, c.size))
			if got := errors.Is(err, relay.ErrPayloadTooLarge); got != c.tooLong {
				t.Errorf("Publish(%d bytes) = %v, want ErrPayloadTooLarge: %v", c.size, err, c.tooLong)
			}
			if !c.tooLong && err != nil {
				t.Errorf("Publish(%d bytes): %v", c.size, err)
			}
		})
	}
}

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

	cases := []struct {
		name     string
		header   nats.Header
		wantUUID string
		wantMD   map[string]string
		dead     bool
	}{
		{"written like watermill-nats", nats.Header{
			natsjs.UUIDHeader: {"uuid-1"}, "Nats-Msg-Id": {"uuid-1"}, "trace_id": {"t-1"},
		}, "uuid-1", map[string]string{"trace_id": "t-1"}, false},
		{"no headers at all", nil, "", map[string]string{}, false},
		{"no UUID, other headers", nats.Header{"k": {"v"}}, "", map[string]string{"k": "v"}, false},
		{"a header with two values", nats.Header{natsjs.UUIDHeader: {"uuid-2"}, "k": {"a", "b"}}, "", nil, true},
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

// One Watermill Publish of many messages is pipelined and fully stored; a
// message over the limit refuses the whole call before anything is sent.
func TestWatermillBatchPublish(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	pub, err := natsjs.NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	topic := natstest.Topic(t, "batch")
	msgs := make([]*message.Message, 500)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, "m%d", i))
	}
	if err := pub.Publish(topic, msgs...); err != nil {
		t.Fatal(err)
	}
	tooBig := append(msgs[:1:1], message.NewMessage(watermill.NewUUID(), make([]byte, 2<<20)))
	if err := pub.Publish(topic, tooBig...); !errors.Is(err, relay.ErrPayloadTooLarge) {
		t.Errorf("Publish with a 2 MiB message = %v, want ErrPayloadTooLarge", err)
	}
	// A retried publish of the same messages is dropped by Nats-Msg-Id.
	if err := pub.Publish(topic, msgs[:10]...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	stream, err := js.Stream(ctx, natsjs.StreamName(topic))
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(len(msgs)) {
		t.Errorf("stream holds %d messages, want %d", info.State.Msgs, len(msgs))
	}
}

// Fields relay relies on are set back after WithConsumerConfig; the others
// are the caller's.
func TestConfigOverrides(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	b := newBroker(t, js,
		natsjs.WithAckWait(7*time.Second),
		natsjs.WithStreamConfig(func(c *jetstream.StreamConfig) {
			c.Storage = jetstream.MemoryStorage
			c.Name = "ignored"
			c.MaxMsgs = 1000
		}),
		natsjs.WithConsumerConfig(func(c *jetstream.ConsumerConfig) {
			c.MaxDeliver = 5
			c.AckWait = time.Minute
			c.MaxAckPending = 42
		}),
	)
	topic := natstest.Topic(t, "configured")
	if err := b.Subscribe(topic, func([]byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	stream, err := js.Stream(ctx, natsjs.StreamName(topic))
	if err != nil {
		t.Fatal(err)
	}
	sc := stream.CachedInfo().Config
	if sc.Storage != jetstream.MemoryStorage || sc.MaxMsgs != 1000 {
		t.Errorf("stream storage %v, max msgs %d; want memory, 1000", sc.Storage, sc.MaxMsgs)
	}
	c, err := stream.Consumer(ctx, natsjs.ConsumerName(natsjs.DefaultGroup))
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	if cc.MaxDeliver != -1 || cc.AckWait != 7*time.Second || cc.MaxAckPending != 42 || cc.AckPolicy != jetstream.AckExplicitPolicy {
		t.Errorf("consumer max deliver %d, ack wait %v, max ack pending %d, ack policy %v; want -1, 7s, 42, explicit",
			cc.MaxDeliver, cc.AckWait, cc.MaxAckPending, cc.AckPolicy)
	}
}

func TestInvalidOptions(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	cases := []struct {
		name string
		js   jetstream.JetStream
		opt  natsjs.Option
	}{
		{"nil JetStream", nil, natsjs.WithGroup("g")},
		{"nil option", js, nil},
		{"empty group", js, natsjs.WithGroup("")},
		{"zero max deliver", js, natsjs.WithMaxDeliver(0)},
		{"negative max deliver", js, natsjs.WithMaxDeliver(-1)},
		{"zero ack wait", js, natsjs.WithAckWait(0)},
		{"zero min backoff", js, natsjs.WithBackoff(0, time.Second)},
		{"max backoff below min", js, natsjs.WithBackoff(time.Second, time.Millisecond)},
		{"nil dead-letter function", js, natsjs.WithDeadLetterTopic(nil)},
		{"zero concurrency", js, natsjs.WithConcurrency(0)},
		{"zero request timeout", js, natsjs.WithRequestTimeout(0)},
		{"nil logger", js, natsjs.WithLogger(nil)},
		{"nil tracer provider", js, natsjs.WithTracerProvider(nil)},
		{"nil meter provider", js, natsjs.WithMeterProvider(nil)},
		{"nil propagators", js, natsjs.WithPropagators(nil)},
		{"nil stream config", js, natsjs.WithStreamConfig(nil)},
		{"nil consumer config", js, natsjs.WithConsumerConfig(nil)},
		{"ack wait of 1ns, a busy loop", js, natsjs.WithAckWait(time.Nanosecond)},
		{"ack wait below the minimum", js, natsjs.WithAckWait(natsjs.MinAckWait - 1)},
		{"ack wait over the maximum", js, natsjs.WithAckWait(natsjs.MaxAckWait + 1)},
		{"min backoff of 1ns, a busy loop", js, natsjs.WithBackoff(time.Nanosecond, time.Second)},
		{"concurrency over the bound", js, natsjs.WithConcurrency(relay.MaxConcurrency + 1)},
		{"concurrency of max int", js, natsjs.WithConcurrency(math.MaxInt)},
		{"prefetch of max int, overflowing concurrency+prefetch", js, natsjs.WithPrefetch(math.MaxInt)},
		{"prefetch over the bound", js, natsjs.WithPrefetch(relay.MaxPrefetch + 1)},
		{"request timeout of max duration", js, natsjs.WithRequestTimeout(math.MaxInt64)},
		{"request timeout of 1ns", js, natsjs.WithRequestTimeout(time.Nanosecond)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A valid option first: a nil one among others is refused too.
			_, errB := natsjs.NewBroker(c.js, natsjs.WithGroup("g"), c.opt)
			_, errP := natsjs.NewPublisher(c.js, natsjs.WithGroup("g"), c.opt)
			_, errS := natsjs.NewSubscriber(c.js, natsjs.WithGroup("g"), c.opt)
			for _, err := range []error{errB, errP, errS} {
				if !errors.Is(err, relay.ErrInvalidOption) || !strings.HasPrefix(err.Error(), "natsjs: ") {
					t.Errorf("constructor error = %v, want a natsjs error wrapping ErrInvalidOption", err)
				}
			}
		})
	}
}

// TestGroupOutsideNATSNameRulesDelivers: a group that the server would refuse
// as a durable name (white space, '*', '>') is accepted at construction,
// since ConsumerName rewrites it, and it delivers.
func TestGroupOutsideNATSNameRulesDelivers(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	const group = "a b*>"
	b := newBroker(t, js, natsjs.WithGroup(group))
	got := make(chan []byte, 1)
	topic := natstest.Topic(t, "orders")
	if err := b.Subscribe(topic, func(p []byte) error { got <- p; return nil }); err != nil {
		t.Fatalf("Subscribe with group %q: %v", group, err)
	}
	publish(t, b, topic, []byte("x"))
	select {
	case p := <-got:
		if string(p) != "x" {
			t.Fatalf("delivered %q, want %q", p, "x")
		}
	case <-time.After(wait):
		t.Fatalf("nothing delivered within %v to group %q (consumer %q)", wait, group, natsjs.ConsumerName(group))
	}
}

// TestWideBackoffIsAccepted: WithBackoff(100ms, math.MaxInt64) is valid; the
// overflow it caused at the 38th failure is guarded by the delivery
// package's TestBackoffDoesNotOverflow.
func TestWideBackoffIsAccepted(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	b, err := natsjs.NewBroker(js, natsjs.WithBackoff(100*time.Millisecond, math.MaxInt64))
	if err != nil {
		t.Fatalf("NewBroker(WithBackoff(100ms, max duration)) = %v, want accepted", err)
	}
	_ = b.Close() // Close always returns nil
}
