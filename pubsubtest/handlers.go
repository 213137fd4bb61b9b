package pubsubtest

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit"
)

// testGoexit has a handler call runtime.Goexit (what t.FailNow and
// require.* do inside a handler) on its first call, with concurrency 1 and an
// ack wait of 30s: the delivery is settled as a failure and redelivered after
// the backoff, long before its lease could expire, and the handler slot is
// free for the next message. A Goexit is neither a return nor a panic; a
// backend that does not see it leaves the delivery unsettled (its lease
// renewed for as long as the process runs) and, with concurrency 1, delivers
// nothing more.
func (s *byteSuite) testGoexit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Concurrency = 1
	cfg.MaxDeliver = 5
	cfg.AckWait = 30 * time.Second
	topic := NewTopic(t)
	var calls, other atomic.Int32
	b := s.broker(t, cfg)
	subscribe(t, b, topic, func(p []byte) error {
		if string(p) == "other" {
			other.Add(1)
			return nil
		}
		if calls.Add(1) == 1 {
			runtime.Goexit()
		}
		return nil
	})
	publishAll(t, b, topic, []string{"exit", "other"})
	poll(waitShort, func() bool { return calls.Load() >= 2 && other.Load() >= 1 })
	if n := calls.Load(); n < 2 {
		t.Errorf("a delivery whose handler called runtime.Goexit was not redelivered within %v (calls %d)", waitShort, n)
	}
	if other.Load() < 1 {
		t.Errorf("with Concurrency 1, nothing delivered within %v after a handler called runtime.Goexit: the slot leaked", waitShort)
	}
	s.waitSettled(t, topic, cfg.Group)
}

// waitSettled waits until the harness's inspector, when it has one, counts
// no message of topic pending for group: every delivery was acknowledged.
func (s *byteSuite) waitSettled(t *testing.T, topic, group string) {
	t.Helper()
	if s.h.NewInspector == nil {
		return
	}
	in := s.h.NewInspector(t)
	pending := func() (n uint64, err error) {
		ctx, cancel := context.WithTimeout(context.Background(), waitShort)
		defer cancel()
		info, err := in.Topic(ctx, topic)
		for _, g := range info.Groups {
			if g.Group == group {
				n = g.Pending
			}
		}
		return n, err
	}
	var n uint64
	var err error
	if !poll(waitShort, func() bool { n, err = pending(); return err == nil && n == 0 }) {
		t.Fatalf("after %v: group %q still has %d messages of %q pending (err %v)", waitShort, group, n, topic, err)
	}
}

// panickyError is an error whose Error method panics on a nil receiver.
type panickyError struct{ text *string }

// Error returns the text; with a nil text it panics, which is the point.
func (e *panickyError) Error() string { return *e.text }

// childEnv names, in a child process of [runInChild], the test that is to
// run for real there.
const childEnv = "PUBSUBTEST_CHILD_TEST"

// runInChild runs the test t again in a child process (the test binary, with
// -test.run selecting t alone), where check runs, so that a crash of the
// process fails t instead of ending the whole test binary. In the child it
// runs check itself. A skip in the child skips t.
func runInChild(t *testing.T, check func(t *testing.T)) {
	if os.Getenv(childEnv) == t.Name() {
		check(t)
		return
	}
	elems := strings.Split(t.Name(), "/")
	for i, e := range elems {
		elems[i] = "^" + regexp.QuoteMeta(e) + "$"
	}
	cmd := exec.Command(os.Args[0], "-test.run="+strings.Join(elems, "/"), "-test.count=1", "-test.v", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child process: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		killed := <-done
		t.Fatalf("child process did not end within 3m (%v):\n%s", killed, out.String())
	}
	text := out.String()
	switch {
	case err == nil && strings.Contains(text, "--- SKIP: "+t.Name()+" "):
		t.Skipf("skipped in the child process:\n%s", text)
	case err == nil && !strings.Contains(text, "--- PASS: "+t.Name()+" "):
		t.Errorf("the child process did not run %s:\n%s", t.Name(), text)
	case err != nil:
		if i := strings.Index(text, "panic:"); i >= 0 {
			t.Errorf("the process crashed: %v\n%s", err, text[i:])
		} else {
			t.Errorf("child process: %v\n%s", err, text)
		}
	}
}

// testErrorMethodPanics has a handler return a typed nil error whose Error
// method panics, with MaxDeliver 1: the process does not crash, and the
// message reaches the dead-letter topic with a reason that mentions the
// panic (read from the dead letter's metadata on the Watermill face, and from
// the dead-letter log record when the harness passes Config.Logger on). It
// guards against formatting the handler's error outside any recover, in a
// worker goroutine or for the dead letter's reason, which kills the process.
// The check runs in a child process, see [runInChild].
func (s *byteSuite) testErrorMethodPanics(t *testing.T) {
	runInChild(t, func(t *testing.T) {
		logs := newLogCapture()
		cfg := DefaultConfig()
		cfg.MaxDeliver = 1
		cfg.Logger = slog.New(logs)
		topic := NewTopic(t)
		dead := s.watchDead(t, topic+".dead")
		b := s.broker(t, cfg)
		subscribe(t, b, topic, func([]byte) error {
			var typedNil *panickyError
			return typedNil
		})
		publish(t, b, topic, []byte("x"))
		m := dead.next(t, "dead-letter topic "+topic+".dead")
		assert.NoError(t, checkPayload(m.payload, []byte("x")), "dead letter")
		if m.metadata != nil && !strings.Contains(m.metadata[relay.MetadataReason], "panic") {
			t.Errorf("dead letter reason %q does not mention the panic", m.metadata[relay.MetadataReason])
		}
		if logs.len() == 0 {
			return // the harness does not pass Config.Logger on
		}
		var r logRecord
		if !poll(waitShort, func() (ok bool) { r, ok = logs.find(slog.LevelWarn, logSchema[1].suffix); return ok }) {
			t.Fatalf("no Warn record ending %q within %v", logSchema[1].suffix, waitShort)
		}
		if !strings.Contains(r.attrs["reason"], "panic") {
			t.Errorf("dead-letter record's reason %q does not mention the panic", r.attrs["reason"])
		}
	})
}

// testPayloadMutation has a handler overwrite its payload and fail
// permanently: the dead letter still carries the published payload byte for
// byte. It guards against handing the handler the very slice that is later
// dead-lettered.
func (s *byteSuite) testPayloadMutation(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxDeliver = 1
	topic := NewTopic(t)
	dead := s.watchDead(t, topic+".dead")
	b := s.broker(t, cfg)
	subscribe(t, b, topic, func(p []byte) error {
		for i := range p {
			p[i] = 'X'
		}
		return relay.Permanent(errInduced)
	})
	publish(t, b, topic, []byte("original"))
	m := dead.next(t, "dead-letter topic "+topic+".dead")
	assert.NoError(t, checkPayload(m.payload, []byte("original")), "dead letter (the handler's change leaked into it)")
}

// testPayloadMutation: a Watermill handler that overwrites msg.Payload and
// nacks, MaxDeliver times, leaves the redeliveries and the dead letter with
// the published payload.
func (s *wmSuite) testPayloadMutation(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxDeliver = 2
	topic := NewTopic(t)
	src := subscribeWM(t, s.subscriber(t, cfg), topic)
	changed := make(chan string, 8)
	go func() {
		for m := range src { // ends when the subscriber closes at cleanup
			select {
			case changed <- string(m.Payload):
			default:
			}
			for i := range m.Payload {
				m.Payload[i] = 'X'
			}
			m.Nack()
		}
	}()
	dead := subscribeWM(t, s.subscriber(t, DefaultConfig()), topic+".dead")
	publishWM(t, s.publisher(t, DefaultConfig()), topic, message.NewMessage(watermill.NewUUID(), []byte("original")))
	got := receiveWM(t, dead, waitShort, "dead-letter topic "+topic+".dead")
	got.Ack()
	assert.NoError(t, checkPayload(got.Payload, []byte("original")), "dead letter (the handler's change leaked into it)")
	for range cfg.MaxDeliver {
		select {
		case p := <-changed:
			if p != "original" {
				t.Errorf("a delivery carried %q, want %q (a handler's change leaked into a redelivery)", p, "original")
			}
		default:
		}
	}
}

// testPublisherReuse: once a Watermill Publish of a batch returned, the
// caller may overwrite its payloads; every message is delivered as published,
// an empty payload and payloads of different lengths among them, and a
// handler that appends to its payload changes no other message of the batch.
func (s *wmSuite) testPublisherReuse(t *testing.T) {
	topic := NewTopic(t)
	src := subscribeWM(t, s.subscriber(t, DefaultConfig()), topic)
	want := map[string]bool{"": true, "a": true, "bb": true, "ccc": true, "dddd": true}
	var msgs []*message.Message
	for p := range want {
		msgs = append(msgs, message.NewMessage(watermill.NewUUID(), []byte(p)))
	}
	publishWM(t, s.publisher(t, DefaultConfig()), topic, msgs...)
	for _, m := range msgs {
		for i := range m.Payload {
			m.Payload[i] = 'X'
		}
	}
	for range len(msgs) {
		m := receiveWM(t, src, waitShort, "message of the batch on "+topic)
		got := string(m.Payload)
		_ = append(m.Payload, "appended by the handler"...)
		m.Ack()
		if !want[got] {
			t.Errorf("delivered %q, which is no payload of the batch as published, or was delivered twice", got)
		}
		delete(want, got)
	}
}

// deadLetter is a message read from a dead-letter topic; metadata is nil
// when it was read on the byte face.
type deadLetter struct {
	payload  []byte
	metadata map[string]string
}

// deadWatch yields what arrives on a dead-letter topic.
type deadWatch struct{ ch chan deadLetter }

// next returns the next dead letter, failing t after waitShort.
func (d *deadWatch) next(t *testing.T, what string) deadLetter {
	t.Helper()
	select {
	case m := <-d.ch:
		return m
	case <-time.After(waitShort):
		t.Fatalf("%s: no dead letter within %v", what, waitShort)
		return deadLetter{}
	}
}

// watchDead reads dlTopic for the rest of t in a group of its own: on the
// Watermill face when the harness has one, so that the dead letters'
// metadata is visible, else on the byte face.
func (s *byteSuite) watchDead(t *testing.T, dlTopic string) *deadWatch {
	t.Helper()
	d := &deadWatch{ch: make(chan deadLetter, 1000)}
	if s.h.NewSubscriber == nil {
		subscribe(t, s.broker(t, DefaultConfig()), dlTopic, func(p []byte) error {
			d.ch <- deadLetter{payload: bytes.Clone(p)}
			return nil
		})
		return d
	}
	sub, err := s.h.NewSubscriber(t, DefaultConfig())
	if err != nil {
		t.Fatalf("NewSubscriber: %v", err)
	}
	t.Cleanup(func() {
		assert.NoError(t, testkit.CloseWithin(t, waitLong, sub.Close, "subscriber Close at cleanup"), "subscriber Close at cleanup")
	})
	ch := subscribeWM(t, sub, dlTopic)
	go func() {
		for m := range ch { // ends when the subscriber closes at cleanup
			m.Ack()
			d.ch <- deadLetter{payload: bytes.Clone(m.Payload), metadata: map[string]string(m.Metadata)}
		}
	}()
	return d
}

// runRouter runs, for the rest of t, a Watermill router with relay.NackReason
// outermost (as relay's README sets one up) and one consumer handler, h, on
// topic of sub.
func runRouter(t *testing.T, sub message.Subscriber, topic string, h message.NoPublishHandlerFunc) {
	t.Helper()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: waitShort}, watermill.NopLogger{})
	require.NoError(t, err, "message.NewRouter")
	router.AddMiddleware(relay.NackReason)
	router.AddConsumerHandler("pubsubtest", topic, sub, h)
	done := make(chan error, 1)
	go func() { done <- router.Run(context.Background()) }()
	t.Cleanup(func() {
		assert.NoError(t, router.Close(), "router Close") // bounded by its CloseTimeout
		assert.NoError(t, testkit.Receive(t, done, waitShort, "router Run's return after Close"), "router Run")
	})
	select {
	case <-router.Running():
	case <-time.After(waitShort):
		t.Fatalf("the router is not running after %v", waitShort)
	}
}

// testGoexit has a router handler call runtime.Goexit (what t.FailNow and
// require.* do inside a handler) on its first call, with Concurrency 1 and
// an ack wait of 30s. Watermill's router nacks after a panic but neither acks
// nor nacks after a Goexit; behind relay.NackReason the delivery is nacked,
// redelivered after the backoff, long before its lease could expire, and the
// subscription's one slot is free for the next message. It guards against a
// message left out for ever, its lease renewed while the process runs, and,
// with Concurrency 1, nothing more delivered.
func (s *wmSuite) testGoexit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Concurrency, cfg.MaxDeliver, cfg.AckWait = 1, 5, 30*time.Second
	topic := NewTopic(t)
	var calls, other atomic.Int32
	runRouter(t, s.subscriber(t, cfg), topic, func(msg *message.Message) error {
		if string(msg.Payload) == "other" {
			other.Add(1)
			return nil
		}
		if calls.Add(1) == 1 {
			runtime.Goexit()
		}
		return nil
	})
	publishWM(t, s.publisher(t, DefaultConfig()), topic,
		message.NewMessage(watermill.NewUUID(), []byte("exit")), message.NewMessage(watermill.NewUUID(), []byte("other")))
	poll(waitShort, func() bool { return calls.Load() >= 2 && other.Load() >= 1 })
	assert.GreaterOrEqual(t, calls.Load(), int32(2),
		"a message whose router handler called runtime.Goexit was not redelivered within %v", waitShort)
	assert.GreaterOrEqual(t, other.Load(), int32(1),
		"with Concurrency 1, nothing delivered within %v after a router handler called runtime.Goexit: the slot leaked", waitShort)
	s.bytes.waitSettled(t, topic, cfg.Group)
}

// testErrorMethodPanics has a router handler return a typed nil error whose
// Error method panics, with MaxDeliver 1: the process does not crash, and the
// message reaches the dead-letter topic with its payload and a reason that
// mentions the panic. relay.NackReason reads the error's text for the
// reason; it guards against that read crashing the router's goroutine or
// losing the message. The check runs in a child process, see [runInChild].
func (s *wmSuite) testErrorMethodPanics(t *testing.T) {
	runInChild(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.MaxDeliver = 1
		topic := NewTopic(t)
		dead := subscribeWM(t, s.subscriber(t, DefaultConfig()), topic+".dead")
		runRouter(t, s.subscriber(t, cfg), topic, func(*message.Message) error {
			var typedNil *panickyError
			return typedNil
		})
		publishWM(t, s.publisher(t, DefaultConfig()), topic, message.NewMessage(watermill.NewUUID(), []byte("x")))
		got := receiveWM(t, dead, waitShort, "dead-letter topic "+topic+".dead")
		got.Ack()
		assert.NoError(t, checkPayload(got.Payload, []byte("x")), "dead letter")
		assert.Contains(t, got.Metadata.Get(relay.MetadataReason), "panic", "the dead letter's reason does not mention the panic")
	})
}
