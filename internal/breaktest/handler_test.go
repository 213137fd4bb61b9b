package breaktest_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/memory"
	"github.com/go-relay/relay/retrier"
)

// TestHandlerGoexitSettlesAndKeepsConsuming has a handler call
// runtime.Goexit (as t.FailNow or require.* inside a handler do) on its
// first call, with concurrency 1 and a 30s ack wait / claim timeout. The
// delivery is settled as a failure and redelivered after the backoff, well
// before the lease could expire, and the subscription goes on to deliver the
// next message. It guards against a Goexit that is neither a return nor a
// panic leaving the delivery unsettled (stranded while the process runs, its
// lease renewed forever) and leaking the handler slot (with concurrency 1, no
// further delivery).
func TestHandlerGoexitSettlesAndKeepsConsuming(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		topic := e.topic("goexit")
		b := e.broker(t, cfg{conc: 1, maxDeliver: 5})
		var calls, other atomic.Int32
		must(t, b.Subscribe(topic, func(p []byte) error {
			if string(p) == "other" {
				other.Add(1)
				return nil
			}
			if calls.Add(1) == 1 {
				runtime.Goexit()
			}
			return nil
		}))
		pubCtx(t, b, topic, []byte("exit"))
		pubCtx(t, b, topic, []byte("other"))
		poll(10*time.Second, func() bool { return calls.Load() >= 2 && other.Load() >= 1 })
		if calls.Load() < 2 {
			t.Errorf("delivery whose handler called runtime.Goexit not redelivered within 10s (calls=%d)", calls.Load())
		}
		if other.Load() < 1 {
			t.Errorf("with concurrency 1, no message delivered within 10s after a handler called runtime.Goexit (slot leaked)")
		}
	})
}

// badErr is an error whose Error method panics when its pointer is nil.
type badErr struct{ p *string }

func (e *badErr) Error() string { return *e.p }

// errorPanicChild names the backend that
// TestHandlerErrorWhoseErrorMethodPanicsIsSettled runs in a child process.
const errorPanicChild = "BREAKTEST_ERROR_PANIC_CHILD"

// TestHandlerErrorWhoseErrorMethodPanicsIsSettled has a handler return a
// typed nil *badErr, whose Error method panics, with max deliver 1, on every
// backend and on the retrier over a memory broker without native retries. The
// process does not crash and the message reaches the dead-letter topic with a
// reason that mentions the panic (the retrier's byte-face dead letter has no
// metadata: it logs the reason, which must mention the panic). Each backend runs in a child process, so
// that a crash fails the test rather than ending the test binary. It guards
// against formatting the handler's error outside any recover (in a worker
// goroutine, for the dead letter's reason), which killed the process.
func TestHandlerErrorWhoseErrorMethodPanicsIsSettled(t *testing.T) {
	if which := os.Getenv(errorPanicChild); which != "" {
		runErrorPanicChild(t, which)
		return
	}
	for _, which := range []string{"memory", "nats", "redis", "retrier"} {
		t.Run(which, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHandlerErrorWhoseErrorMethodPanicsIsSettled$", "-test.count=1", "-test.v", "-test.timeout=50s")
			cmd.Env = append(os.Environ(), errorPanicChild+"="+which)
			out, err := runBounded(cmd, 60*time.Second)
			if err == nil {
				if !strings.Contains(out, "--- PASS: TestHandlerErrorWhoseErrorMethodPanicsIsSettled") {
					t.Errorf("child process ran no test:\n%s", out)
				}
				return
			}
			if i := strings.Index(out, "panic:"); i >= 0 {
				t.Errorf("process crashed when a handler returned an error whose Error method panics: %v\n%s", err, firstLines(out[i:], 12))
			} else {
				t.Errorf("child process failed: %v\n%s", err, out)
			}
		})
	}
}

// runErrorPanicChild is the child's side of
// TestHandlerErrorWhoseErrorMethodPanicsIsSettled for backend which.
func runErrorPanicChild(t *testing.T, which string) {
	var e *env
	var b relay.Broker
	var log syncBuffer
	switch which {
	case "memory":
		e = memEnv(t)
	case "nats":
		e = natsEnv(t)
	case "redis":
		e = redisEnv(t)
	case "retrier":
		e = memEnv(t)
		mb, err := memory.NewBroker(memory.WithHub(e.hub), memory.WithNativeRetries(false), memory.WithLogger(quiet),
			memory.WithBackoff(10*time.Millisecond, 20*time.Millisecond))
		must(t, err)
		b, err = retrier.New(mb, retrier.WithMaxDeliver(1), retrier.WithBackoff(10*time.Millisecond, 20*time.Millisecond),
			retrier.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
		must(t, err)
		t.Cleanup(func() { closeBounded(t, b.Close) })
	default:
		t.Fatalf("unknown backend %q", which)
	}
	if b == nil {
		b = e.broker(t, cfg{maxDeliver: 1})
	}
	topic := e.topic("crash")
	dead := watchDead(t, e, topic+".dead")
	must(t, b.Subscribe(topic, func([]byte) error {
		var typedNil *badErr
		return typedNil
	}))
	pubCtx(t, b, topic, []byte("x"))
	select {
	case m := <-dead:
		if string(m.Payload) != "x" {
			t.Errorf("%s: dead letter payload %q, want %q", which, m.Payload, "x")
		}
		reason := m.Metadata.Get(relay.MetadataReason)
		if which == "retrier" {
			reason = log.String()
		}
		if !strings.Contains(reason, "panic") {
			t.Errorf("%s: dead letter reason %q does not mention the panic", which, reason)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("%s: message whose handler error panics in Error not dead-lettered within 20s", which)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use, for a logger's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runBounded runs cmd, killing it after d, and returns its combined output.
func runBounded(cmd *exec.Cmd, d time.Duration) (string, error) {
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return buf.String(), err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		return buf.String(), fmt.Errorf("child timed out after %v", d)
	}
}

// firstLines returns the first n lines of s.
func firstLines(s string, n int) string {
	ls := strings.SplitN(s, "\n", n+1)
	if len(ls) > n {
		ls = ls[:n]
	}
	return strings.Join(ls, "\n")
}

// TestHandlerMutatingPayloadLeavesDeadLetterIntact has a handler overwrite its
// payload slice and fail permanently: the dead letter still carries the
// published payload byte for byte. It guards against handing the handler the
// very slice that is later dead-lettered (seen on NATS and Redis).
func TestHandlerMutatingPayloadLeavesDeadLetterIntact(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		topic := e.topic("mutate")
		dead := watchDead(t, e, topic+".dead")
		b := e.broker(t, cfg{maxDeliver: 1})
		must(t, b.Subscribe(topic, func(p []byte) error {
			for i := range p {
				p[i] = 'X'
			}
			return relay.Permanent(errors.New("nope"))
		}))
		pubCtx(t, b, topic, []byte("original"))
		select {
		case m := <-dead:
			if string(m.Payload) != "original" {
				t.Errorf("dead letter payload = %q, want %q (the handler's in-place change leaked into the dead letter)", m.Payload, "original")
			}
		case <-time.After(10 * time.Second):
			t.Errorf("no dead letter within 10s")
		}
	})
}

// maxLengthTopic returns a valid topic of relay.MaxTopicLength bytes that
// starts with e's prefix: its default dead-letter topic (plus ".dead") is too
// long to be valid.
func maxLengthTopic(t *testing.T, e *env) string {
	t.Helper()
	topic := e.topic("")
	topic += strings.Repeat("t", relay.MaxTopicLength-len(topic))
	must(t, relay.ValidateTopic(topic))
	return topic
}

// TestLongTopicIsRefusedUnlessItsDeadLetterTopicIsValid takes a valid
// 255-byte topic. With the default dead-letter topic (the topic plus ".dead",
// over 255 bytes) Subscribe refuses it on both faces with
// relay.ErrInvalidTopic. With WithDeadLetterTopic naming a short valid topic,
// Subscribe accepts it and a permanently failing message is handled once and
// dead-lettered there, with the long topic as its source. It guards against
// accepting a subscription whose messages have nowhere to go (memory and NATS
// redelivered them forever; Redis wrote them to a stream relay cannot read).
func TestLongTopicIsRefusedUnlessItsDeadLetterTopicIsValid(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		t.Run("default dead-letter topic", func(t *testing.T) {
			topic := maxLengthTopic(t, e)
			b := e.broker(t, cfg{maxDeliver: 2})
			if err := b.Subscribe(topic, func([]byte) error { return nil }); !errors.Is(err, relay.ErrInvalidTopic) {
				t.Errorf("Subscribe(%d-byte topic) = %v, want ErrInvalidTopic (its dead-letter topic is %d bytes)", len(topic), err, len(topic)+len(".dead"))
			}
			s := e.sub(t, cfg{maxDeliver: 2})
			if _, err := s.Subscribe(t.Context(), topic); !errors.Is(err, relay.ErrInvalidTopic) {
				t.Errorf("wm Subscribe(%d-byte topic) = %v, want ErrInvalidTopic", len(topic), err)
			}
		})
		t.Run("short dead-letter topic", func(t *testing.T) {
			topic := maxLengthTopic(t, e)
			dlTopic := e.topic("long.dead")
			dead := watchDead(t, e, dlTopic)
			b := e.broker(t, cfg{maxDeliver: 2, dl: func(string) string { return dlTopic }})
			var calls atomic.Int32
			must(t, b.Subscribe(topic, func([]byte) error {
				calls.Add(1)
				return relay.Permanent(errors.New("poison"))
			}))
			pubCtx(t, b, topic, []byte("p"))
			select {
			case m := <-dead:
				if string(m.Payload) != "p" {
					t.Errorf("dead letter payload %q, want %q", m.Payload, "p")
				}
				if src := m.Metadata.Get(relay.MetadataSourceTopic); src != topic {
					t.Errorf("dead letter source topic of %d bytes, want the %d-byte topic", len(src), len(topic))
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("permanent failure on a %d-byte topic not dead-lettered to %q within 10s; handler calls=%d", len(topic), dlTopic, calls.Load())
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("handler of a permanently failing message called %d times, want 1", n)
			}
		})
	})
}

// TestSubscribeRefusesInvalidDeadLetterTopic sets WithDeadLetterTopic to a
// function returning an invalid topic: Subscribe refuses every topic on both
// faces with relay.ErrInvalidTopic. It guards against subscriptions whose
// failed messages cannot be dead-lettered.
func TestSubscribeRefusesInvalidDeadLetterTopic(t *testing.T) {
	const bad = "not valid *"
	forEach(t, func(t *testing.T, e *env) {
		c := cfg{dl: func(string) string { return bad }}
		b := e.broker(t, c)
		if err := b.Subscribe(e.topic("dlbad"), func([]byte) error { return nil }); !errors.Is(err, relay.ErrInvalidTopic) {
			t.Errorf("Subscribe with dead-letter topic %q = %v, want ErrInvalidTopic", bad, err)
		}
		s := e.sub(t, c)
		if _, err := s.Subscribe(t.Context(), e.topic("dlbad")); !errors.Is(err, relay.ErrInvalidTopic) {
			t.Errorf("wm Subscribe with dead-letter topic %q = %v, want ErrInvalidTopic", bad, err)
		}
	})
}

// TestRetrierSubscribeRefusesInvalidDeadLetterTopic checks that the retrier,
// over a memory broker without native retries, refuses with
// relay.ErrInvalidTopic a topic whose dead-letter topic is invalid, whether the
// WithDeadLetterTopic function returns an invalid topic or the default one is
// too long. It guards against a retry loop whose dead-letter publish always
// fails: the message went back to the plain queue, which redelivered it with
// a fresh budget of attempts, calling the handler without bound.
func TestRetrierSubscribeRefusesInvalidDeadLetterTopic(t *testing.T) {
	long := strings.Repeat("t", relay.MaxTopicLength)
	tests := []struct {
		name  string
		topic string
		opts  []retrier.Option
	}{
		{name: "function returns an invalid topic", topic: "orders",
			opts: []retrier.Option{retrier.WithDeadLetterTopic(func(string) string { return "bad topic" })}},
		{name: "default dead-letter topic too long", topic: long},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mb, err := memory.NewBroker(memory.WithNativeRetries(false), memory.WithLogger(quiet))
			must(t, err)
			r, err := retrier.New(mb, append([]retrier.Option{retrier.WithMaxDeliver(2), retrier.WithLogger(quiet)}, tt.opts...)...)
			must(t, err)
			t.Cleanup(func() { closeBounded(t, r.Close) })
			err = r.Subscribe(tt.topic, func([]byte) error { return relay.Permanent(errors.New("poison")) })
			if !errors.Is(err, relay.ErrInvalidTopic) {
				t.Errorf("retrier Subscribe = %v, want ErrInvalidTopic", err)
			}
		})
	}
}

// TestRetrierCloseDuringBackoffReturnsPromptlyAndKeepsMessage closes a
// retrier while a failed delivery waits out a 5s backoff: Close returns
// within 2s, and a new retrier of the same group on the same hub gets the
// message. It guards against a Close that sleeps through the backoff, and
// against a message dropped because its retry loop was cut short.
func TestRetrierCloseDuringBackoffReturnsPromptlyAndKeepsMessage(t *testing.T) {
	hub, err := memory.NewHub()
	must(t, err)
	mk := func() relay.Broker {
		mb, err := memory.NewBroker(memory.WithHub(hub), memory.WithNativeRetries(false), memory.WithLogger(quiet))
		must(t, err)
		r, err := retrier.New(mb, retrier.WithMaxDeliver(3), retrier.WithBackoff(5*time.Second, 10*time.Second), retrier.WithLogger(quiet))
		must(t, err)
		t.Cleanup(func() { closeBounded(t, r.Close) })
		return r
	}
	r := mk()
	var calls atomic.Int32
	must(t, r.Subscribe("orders", func([]byte) error { calls.Add(1); return errors.New("transient") }))
	pubCtx(t, r, "orders", []byte("p"))
	if !poll(10*time.Second, func() bool { return calls.Load() > 0 }) {
		t.Fatal("message not delivered within 10s")
	}
	var cerr error
	if !within(2*time.Second, func() { cerr = r.Close() }) {
		t.Fatal("retrier Close did not return within 2s while a delivery waits out its backoff")
	}
	must(t, cerr)
	r2 := mk()
	c := newCollector()
	must(t, r2.Subscribe("orders", c.handler))
	if !c.waitN(t, 1, 10*time.Second) {
		t.Error("message not delivered to a new retrier within 10s after Close during backoff: lost")
	}
}
