package natstest_test

import (
	"context"
	"fmt"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRestartKeepsFileStoredStream(t *testing.T) {
	natstest.RequireControl(t)
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "ORDERS", Subjects: []string{"orders"}, Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "orders", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	url := s.URL()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.URL() != url {
		t.Fatalf("URL after restart = %s, want %s", s.URL(), url)
	}
	// The client reconnects on its own; GetMsg retries until it has.
	var msg *jetstream.RawStreamMsg
	for msg == nil {
		stream, err := js.Stream(ctx, "ORDERS")
		if err == nil {
			msg, err = stream.GetMsg(ctx, 1)
		}
		if ctx.Err() != nil {
			t.Fatalf("read after restart: %v", err)
		}
		if msg == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if string(msg.Data) != "hello" {
		t.Fatalf("data = %q, want %q", msg.Data, "hello")
	}
}

func TestStopThenStartReusesPortAndStore(t *testing.T) {
	natstest.RequireControl(t)
	s := natstest.Start(t, natstest.Config{MaxPayload: 1024})
	nc := natstest.Connect(t, s)
	if got := nc.MaxPayload(); got != 1024 {
		t.Fatalf("MaxPayload = %d, want 1024", got)
	}
	s.Stop()
	s.Stop() // idempotent
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("client did not reconnect after Start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunWithoutTest(t *testing.T) {
	s, err := natstest.Run(natstest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	s.Shutdown() // idempotent
	goleak.VerifyNone(t)
}

// fakeTB records how a helper ended the test instead of ending the real one.
type fakeTB struct {
	testing.TB
	skipped, fatal string
	cleanups       []func()
}

func (f *fakeTB) Skip(args ...any)  { f.end(&f.skipped, fmt.Sprint(args...)) }
func (f *fakeTB) Fatal(args ...any) { f.end(&f.fatal, fmt.Sprint(args...)) }
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

// end records msg and stops the calling goroutine, as Skip and Fatal do.
func (f *fakeTB) end(dst *string, msg string) {
	*dst = msg
	runtime.Goexit()
}

func TestExternalServerCannotRestart(t *testing.T) {
	external := natstest.Start(t)
	for _, tc := range []struct {
		name, ci, externalOK string
		wantSkip             bool
	}{
		{"skips", "", "", true},
		{"fails under CI", "true", "", false},
		{"skips under CI with RELAY_EXTERNAL_OK=1", "true", "1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NATS_URL", external.URL())
			t.Setenv("CI", tc.ci)
			t.Setenv(natstest.ExternalOKEnv, tc.externalOK)
			f := &fakeTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				s := natstest.Start(f)
				if s.URL() != external.URL() {
					t.Errorf("URL = %s, want NATS_URL %s", s.URL(), external.URL())
				}
				if err := natstest.Connect(f, s).Flush(); err != nil {
					t.Errorf("flush to NATS_URL server: %v", err)
				}
				s.Restart()
				t.Error("Restart returned on a server it cannot restart")
			}()
			<-done
			for i := len(f.cleanups) - 1; i >= 0; i-- {
				f.cleanups[i]()
			}
			got, other := f.fatal, f.skipped
			if tc.wantSkip {
				got, other = other, got
			}
			if got == "" || other != "" {
				t.Fatalf("skipped=%q fatal=%q, want skip=%v", f.skipped, f.fatal, tc.wantSkip)
			}
			t.Log(got)
		})
	}
}

func TestRunOnBusyPortFailsFast(t *testing.T) {
	s := natstest.Start(t)
	u, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	start := time.Now()
	_, err = natstest.Run(natstest.Config{Port: port})
	if err == nil {
		t.Fatal("Run on a busy port succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Run took %s to fail", d)
	}
	t.Log(err)
}

func TestTopicIsPerTestAndValid(t *testing.T) {
	a, b := natstest.Topic(t, "orders"), natstest.Topic(t, "orders.eu")
	if prefix, _, _ := strings.Cut(a, "."); !strings.HasPrefix(b, prefix+".") {
		t.Errorf("Topic(t, ...) = %q and %q: want one prefix per test", a, b)
	}
	if err := relay.ValidateTopic(b + ".dead"); err != nil {
		t.Errorf("Topic(t, %q)+\".dead\" = %q: %v", "orders.eu", b+".dead", err)
	}
	t.Run("sub-test", func(t *testing.T) {
		if got := natstest.Topic(t, "orders"); got == a {
			t.Errorf("a sub-test got its parent's topic %q", got)
		}
	})
}

// With NATS_URL, the streams of a test's topics are gone once the test is,
// and those of other tests stay.
func TestTopicStreamsAreDeletedOnExternalServer(t *testing.T) {
	s := natstest.Start(t)
	t.Setenv("NATS_URL", s.URL())
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	create := func(t *testing.T, name, subject string) {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}}); err != nil {
			t.Fatal(err)
		}
	}
	create(t, "OTHER", "other.orders")
	t.Run("user", func(t *testing.T) {
		topic := natstest.Topic(t, "orders")
		create(t, "MINE", topic)
		create(t, "MINE_DEAD", topic+".dead")
	})
	for name, want := range map[string]bool{"MINE": false, "MINE_DEAD": false, "OTHER": true} {
		_, err := js.Stream(ctx, name)
		if got := err == nil; got != want {
			t.Errorf("stream %s exists = %v (%v), want %v", name, got, err, want)
		}
	}
}

func TestRequireControl(t *testing.T) {
	for _, tc := range []struct {
		name, url, ci, ok string
		want              string // "", "skip" or "fatal"
	}{
		{"embedded", "", "true", "", ""},
		{"external skips", "nats://127.0.0.1:1", "", "", "skip"},
		{"external fails under CI", "nats://127.0.0.1:1", "true", "", "fatal"},
		{"external skips under CI with RELAY_EXTERNAL_OK=1", "nats://127.0.0.1:1", "true", "1", "skip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NATS_URL", tc.url)
			t.Setenv("CI", tc.ci)
			t.Setenv(natstest.ExternalOKEnv, tc.ok)
			f := &fakeTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				natstest.RequireControl(f)
			}()
			<-done
			got := ""
			switch {
			case f.skipped != "" && f.fatal == "":
				got = "skip"
			case f.fatal != "" && f.skipped == "":
				got = "fatal"
			case f.fatal != "":
				got = "both"
			}
			if got != tc.want {
				t.Fatalf("RequireControl: %q (skipped=%q fatal=%q), want %q", got, f.skipped, f.fatal, tc.want)
			}
		})
	}
}
