package faulttest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/pubsubtest"
)

// NewBrokerFunc returns a broker configured by cfg (the conformance suite's
// [pubsubtest.Config]; a field the backend has no use for is ignored) whose client dials addr, the
// server's address or a [Proxy] in front of it ("host:port"; empty for a
// backend without a server). The client is closed in t.Cleanup; the caller
// closes the broker.
type NewBrokerFunc func(t testing.TB, addr string, cfg pubsubtest.Config) (relay.Broker, error)

// Server is a backend's real server, as a case controls it.
type Server interface {
	// Addr is the server's "host:port", the same across restarts.
	Addr() string
	// Stop takes the server down, the way its test helper stops it hardest
	// (redis-server: SIGKILL; the embedded NATS server: shutdown), keeping
	// its persisted data for Start.
	Stop() error
	// Start brings a stopped server up again on the same address and data,
	// and returns once it accepts clients.
	Start() error
}

// Backend describes one backend to the cases.
type Backend struct {
	// Name names the backend in test logs and RELIABILITY lines: "natsjs".
	Name string
	// Server is the backend's server for this test, nil for memory; cases
	// that need one skip without it.
	Server Server
	// NewBroker makes brokers; see [NewBrokerFunc].
	NewBroker NewBrokerFunc
	// Helper is set when the test binary has a TestFaultHelperProcess test
	// that calls [HelperProcess] with the same NewBroker: the consumer-crash
	// case needs it to run a consumer in a child process.
	Helper bool
	// Topic, when set, takes the topic a case made up and returns the one
	// it uses: a test kit's per-test name (natstest.Topic, a redistest key
	// prefix), so that the kit's cleanup removes what the case created on a
	// shared server. Nil uses the topic as it is.
	Topic func(t testing.TB, name string) string
}

// Full reports whether the full fault matrix runs: RELAY_FAULTS=full. The
// default run uses smaller counts and shorter outages.
func Full() bool { return os.Getenv("RELAY_FAULTS") == "full" }

// pick returns full in full mode and def otherwise.
func pick[T any](def, full T) T {
	if Full() {
		return full
	}
	return def
}

var seq atomic.Int64

// names returns a topic and a group unique in the process, so that cases
// sharing a server (REDIS_URL, NATS_URL) do not collide.
func names(t testing.TB, b Backend) (topic, group string) {
	n := seq.Add(1)
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, t.Name())
	topic = fmt.Sprintf("fault.%s.%d.%d", clean, time.Now().UnixNano()%1e9, n)
	if b.Topic != nil {
		topic = b.Topic(t, topic)
	}
	return topic, fmt.Sprintf("fault-%s-%d", b.Name, n)
}

func newBroker(t testing.TB, b Backend, addr string, cfg pubsubtest.Config) relay.Broker {
	t.Helper()
	br, err := b.NewBroker(t, addr, cfg)
	if err != nil {
		t.Fatalf("faulttest: new %s broker: %v", b.Name, err)
	}
	return br
}

func addrOf(b Backend) string {
	if b.Server == nil {
		return ""
	}
	return b.Server.Addr()
}

// report logs the figures of a case in the line RELIABILITY.md is made from.
// recovery < 0 prints "-".
func report(t testing.TB, fault string, b Backend, messages, lost, duplicates int, recovery time.Duration, extra string) {
	t.Helper()
	rec := "-"
	if recovery >= 0 {
		rec = recovery.Round(time.Millisecond).String()
	}
	mode := "default"
	if Full() {
		mode = "full"
	}
	t.Logf("RELIABILITY fault=%s backend=%s mode=%s messages=%d lost=%d duplicates=%d recovery=%s %s",
		fault, b.Name, mode, messages, lost, duplicates, rec, extra)
}

// waitFor polls cond every 20 ms until it holds or timeout passes, and
// reports whether it held.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// publishAll publishes ids [from, to) with workers goroutines, each Publish
// bounded by perCall, recording every outcome.
func publishAll(t testing.TB, br relay.Broker, topic string, l *Ledger, from, to, workers int, perCall time.Duration) {
	t.Helper()
	ids := make(chan int)
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for id := range ids {
				ctx, cancel := context.WithTimeout(context.Background(), perCall)
				err := br.Publish(ctx, topic, Payload(id))
				cancel()
				l.Published(id, err)
				if err != nil {
					t.Errorf("publish %d: %v", id, err)
				}
			}
		}()
	}
	for id := from; id < to; id++ {
		ids <- id
	}
	close(ids)
	for range workers {
		<-done
	}
}

// closeBroker closes br, failing the test on error.
func closeBroker(t testing.TB, br relay.Broker) {
	t.Helper()
	if err := br.Close(); err != nil {
		t.Errorf("close broker: %v", err)
	}
}

// idOf reads a payload's id, failing the test for a foreign payload.
func idOf(t testing.TB, payload []byte) int {
	id, err := ID(payload)
	if err != nil {
		t.Error(err)
		return -1
	}
	return id
}

// Logger is the logger the backends' brokers in the cases should use: one
// that discards, since outages make them log a lot, unless RELAY_FAULTS_LOG
// is set, when they log to stderr at that level ("debug", "info", "warn").
func Logger() *slog.Logger {
	lvl := os.Getenv("RELAY_FAULTS_LOG")
	if lvl == "" {
		return slog.New(slog.DiscardHandler)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(lvl)); err != nil {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
