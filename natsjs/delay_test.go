package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

// oldServer starts the nats-server binary on PATH (Debian's is 2.9.10, from
// before message schedules) with JetStream on a free loopback port and a
// temporary store, and returns its URL.
func oldServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("nats-server binary not on PATH under CI=true: %v", err)
		}
		t.Skipf("no nats-server binary on PATH to play an old server: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	cmd := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-sd", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			_ = c.Close()
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen within 10s: %v", bin, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// On a server older than 2.12 PublishAt (and a delayed Watermill message)
// returns ErrSchedulesUnsupported naming the version, stores nothing, and
// does not spin.
func TestPublishAtOnAServerWithoutSchedules(t *testing.T) {
	nc, err := nats.Connect(oldServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := natsjs.NewBroker(js)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err = b.PublishAt(ctx, "old.delayed", []byte("x"), time.Now().Add(time.Minute))
	if !errors.Is(err, natsjs.ErrSchedulesUnsupported) || !strings.Contains(err.Error(), nc.ConnectedServerVersion()) {
		t.Fatalf("PublishAt on nats-server %s = %v, want ErrSchedulesUnsupported naming the version", nc.ConnectedServerVersion(), err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("PublishAt took %v to refuse, want at once", d)
	}
	t.Logf("nats-server %s: %v", nc.ConnectedServerVersion(), err)
	// An undelayed publish still works, and nothing else was stored.
	if err := b.Publish(ctx, "old.delayed", []byte("now")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	stream, err := js.Stream(ctx, natsjs.StreamName("old.delayed"))
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages, want only the undelayed one", info.State.Msgs)
	}
}

// A stream that exists without schedules (made by an older relay, or by
// hand) gets allow_msg_schedules and the schedule subject, and nothing else
// of it changes.
func TestPublishAtEnablesSchedulesOnAnExistingStream(t *testing.T) {
	nc := natstest.Connect(t, natstest.Start(t))
	natstest.RequireServerAtLeast(t, nc, "2.12.0", "message schedules came in nats-server 2.12")
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	theirs := jetstream.StreamConfig{Name: "invoices", Subjects: []string{"invoices"}, MaxAge: 48 * time.Hour, Storage: jetstream.FileStorage}
	if _, err := js.CreateStream(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	b, err := natsjs.NewBroker(js)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	got := make(chan time.Time, 1)
	if err := b.Subscribe("invoices", func([]byte) error { got <- time.Now(); return nil }); err != nil {
		t.Fatal(err)
	}
	due := time.Now().Add(500 * time.Millisecond)
	if err := b.PublishAt(ctx, "invoices", []byte("later"), due); err != nil {
		t.Fatalf("PublishAt: %v", err)
	}
	select {
	case at := <-got:
		if at.Before(due) {
			t.Errorf("delivered %v early", due.Sub(at))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("delayed message not delivered within 10s")
	}
	stream, err := js.Stream(ctx, "invoices")
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	if !cfg.AllowMsgSchedules || cfg.MaxAge != theirs.MaxAge ||
		strings.Join(cfg.Subjects, " ") != "invoices "+natsjs.ScheduleSubjectPrefix+"invoices.*" {
		t.Errorf("stream config after PublishAt: schedules %v, max age %v, subjects %q; want schedules on, max age %v, subjects [invoices %sinvoices.*]",
			cfg.AllowMsgSchedules, cfg.MaxAge, cfg.Subjects, theirs.MaxAge, natsjs.ScheduleSubjectPrefix)
	}
}
