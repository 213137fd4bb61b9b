package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-relay/relay/internal/testkit"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

// Edge cases of the engine's own pull requests
// ($JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>) against a real server:
// what is fetched is never dropped, and no failure makes the fetch loop spin.

// pullCounter counts the pull requests sent for topic's stream, seen by a
// connection of its own.
func pullCounter(t *testing.T, s *natstest.Server, topic string) *atomic.Int64 {
	t.Helper()
	nc := natstest.Connect(t, s)
	var n atomic.Int64
	sub, err := nc.Subscribe("$JS.API.CONSUMER.MSG.NEXT."+natsjs.StreamName(topic)+".>", func(*nats.Msg) { n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &n
}

// received records the payloads a handler got.
type received struct {
	mu  sync.Mutex
	got map[string]int
}

func (r *received) handler(b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[string]int{}
	}
	r.got[string(b)]++
	return nil
}

func (r *received) has(payloads ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range payloads {
		if r.got[p] == 0 {
			return false
		}
	}
	return true
}

func payloads(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// warnLog is a broker logger at Warn whose lines can be counted.
func warnLog() (*testkit.Buffer, *slog.Logger) {
	var out testkit.Buffer
	return &out, slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func countLines(out *testkit.Buffer, substr string) int {
	n := 0
	for line := range strings.Lines(out.String()) {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// checkNoSpin fails t if more than most pull requests go out within d of an
// idle subscription (one renewal per fetchWait, 5 s, is expected).
func checkNoSpin(t *testing.T, pulls *atomic.Int64, d time.Duration, most int64) {
	t.Helper()
	before := pulls.Load()
	time.Sleep(d) // measuring a rate over d, not synchronizing
	if n := pulls.Load() - before; n > most {
		t.Errorf("%d pull requests in %v while idle, want at most %d", n, d, most)
	}
}

// The group's durable consumer deleted under a running subscription is made
// again, and messages published afterwards are consumed, without a hot loop.
func TestPullConsumerDeletedIsRecreated(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	topic := natstest.Topic(t, "pull.deleted")
	pulls := pullCounter(t, s, topic)
	out, log := warnLog()
	b := newBroker(t, js, natsjs.WithLogger(log))
	var r received
	if err := b.Subscribe(topic, r.handler); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, []byte("before"))
	eventually(t, func() bool { return r.has("before") }, "message before the delete")

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for round := range 2 { // deleted while a pull request waits, twice
		if err := js.DeleteConsumer(ctx, natsjs.StreamName(topic), natsjs.ConsumerName(natsjs.DefaultGroup)); err != nil {
			t.Fatal(err)
		}
		after := payloads(fmt.Sprintf("after%d", round), 5)
		for _, p := range after {
			publish(t, b, topic, []byte(p))
		}
		eventually(t, func() bool { return r.has(after...) }, "messages published after the delete")
	}
	checkNoSpin(t, pulls, 3*time.Second, 3)
	if n := countLines(out, "level=WARN"); n > 10 {
		t.Errorf("%d warnings after two consumer deletes, want few:\n%s", n, out.String())
	}
}

// The group's consumer deleted while the subscription has no pull request
// waiting (its one place is taken by a handler), so that no 409 tells it: its
// next request reaches no consumer. The server answers such a request with a
// 503 only while no other client has interest in the subject; here one does
// (pullCounter's, like a monitoring tap on $JS.API.>), so nothing answers,
// and the subscription must set its consumer up again rather than send every
// request to no one.
func TestPullRequestNobodyAnswersRecreatesConsumer(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	topic := natstest.Topic(t, "pull.unanswered")
	pulls := pullCounter(t, s, topic)
	b := newBroker(t, js, natsjs.WithConcurrency(1), natsjs.WithPrefetch(0))
	var r received
	release := make(chan struct{})
	if err := b.Subscribe(topic, func(p []byte) error {
		if string(p) == "held" {
			<-release
		}
		return r.handler(p)
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, []byte("held"))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	stream, consumer := natsjs.StreamName(topic), natsjs.ConsumerName(natsjs.DefaultGroup)
	eventually(t, func() bool { // the message held, and no request waiting
		c, err := js.Consumer(ctx, stream, consumer)
		if err != nil {
			t.Fatal(err)
		}
		info := c.CachedInfo()
		return info.NumAckPending == 1 && info.NumWaiting == 0
	}, "the held message handled with no pull request waiting")
	if err := js.DeleteConsumer(ctx, stream, consumer); err != nil {
		t.Fatal(err)
	}
	before := pulls.Load()
	close(release)
	after := payloads("after", 3)
	for _, p := range after {
		publish(t, b, topic, []byte(p))
	}
	eventually(t, func() bool { return r.has(after...) }, "messages published after the delete")
	if pulls.Load() == before {
		t.Error("no pull request after the delete: the case was not the one tested")
	}
}

// The stream deleted (and so the consumer) or purged under a running
// subscription: later messages are consumed. The stream someone else
// re-creates has relay's settings, so that it may also be the engine's own,
// set up again in the gap after the delete (a fetch failed): the operator's
// create then finds it as it would have made it.
func TestPullStreamDeletedOrPurged(t *testing.T) {
	tests := []struct {
		name string
		op   func(ctx context.Context, js jetstream.JetStream, stream, topic string) error
	}{
		{"deleted", func(ctx context.Context, js jetstream.JetStream, stream, topic string) error {
			return js.DeleteStream(ctx, stream)
		}},
		{"deleted and recreated by someone else", func(ctx context.Context, js jetstream.JetStream, stream, topic string) error {
			if err := js.DeleteStream(ctx, stream); err != nil {
				return err
			}
			return createStreamAfterDelete(ctx, js, jetstream.StreamConfig{Name: stream, Subjects: []string{topic}, Storage: jetstream.FileStorage})
		}},
		{"purged", func(ctx context.Context, js jetstream.JetStream, stream, topic string) error {
			st, err := js.Stream(ctx, stream)
			if err != nil {
				return err
			}
			return st.Purge(ctx)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := natstest.Start(t)
			_, js := connect(t, s)
			topic := natstest.Topic(t, "pull.stream")
			pulls := pullCounter(t, s, topic)
			out, log := warnLog()
			b := newBroker(t, js, natsjs.WithLogger(log))
			var r received
			if err := b.Subscribe(topic, r.handler); err != nil {
				t.Fatal(err)
			}
			publish(t, b, topic, []byte("before"))
			eventually(t, func() bool { return r.has("before") }, "message before")
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := tt.op(ctx, js, natsjs.StreamName(topic), topic); err != nil {
				t.Fatal(err)
			}
			after := payloads("after", 5)
			for _, p := range after {
				publish(t, b, topic, []byte(p))
			}
			if !pollUntil(wait, func() bool { return r.has(after...) }) {
				// Rare under a heavily loaded machine (seen once in CI on the
				// re-created stream): the engine's log says what it saw.
				t.Fatalf("not within %v: messages published after; the engine logged:\n%s", wait, out.String())
			}
			checkNoSpin(t, pulls, 3*time.Second, 3)
			if n := countLines(out, "level=WARN"); n > 10 {
				t.Errorf("%d warnings, want few:\n%s", n, out.String())
			}
		})
	}
}

// createStreamAfterDelete creates a stream as an operator would right after
// deleting one, retrying while the server refuses it with 10049 ("error
// creating store for stream"): nats-server v2.15.2 removes the account's
// emptied store directories in a goroutine of its own after a delete
// (stream.stop), and a create that runs meanwhile loses its directory. Seen
// in about 3 of 100 creates right after a delete on a loaded machine.
func createStreamAfterDelete(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	for {
		_, err := js.CreateStream(ctx, cfg)
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10049 {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Consumer limits on pull requests set through WithConsumerConfig: the
// engine's requests stay within them, so the server answers no 409, and
// nothing stalls when MaxAckPending is below concurrency plus prefetch.
func TestPullConsumerLimits(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*jetstream.ConsumerConfig)
	}{
		{"MaxRequestBatch 2", func(c *jetstream.ConsumerConfig) { c.MaxRequestBatch = 2 }},
		{"MaxRequestMaxBytes 1024", func(c *jetstream.ConsumerConfig) { c.MaxRequestMaxBytes = 1024 }},
		{"MaxRequestExpires 1s", func(c *jetstream.ConsumerConfig) { c.MaxRequestExpires = time.Second }},
		{"MaxWaiting 1", func(c *jetstream.ConsumerConfig) { c.MaxWaiting = 1 }},
		{"MaxAckPending 3", func(c *jetstream.ConsumerConfig) { c.MaxAckPending = 3 }},
		{"MaxAckPending 1", func(c *jetstream.ConsumerConfig) { c.MaxAckPending = 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := natstest.Start(t)
			_, js := connect(t, s)
			topic := natstest.Topic(t, "pull.limits")
			pulls := pullCounter(t, s, topic)
			out, log := warnLog()
			b := newBroker(t, js, natsjs.WithLogger(log), natsjs.WithConsumerConfig(tt.cfg), natsjs.WithConcurrency(4), natsjs.WithPrefetch(8))
			var r received
			if err := b.Subscribe(topic, func(p []byte) error {
				time.Sleep(2 * time.Millisecond) // a handler that takes a moment: acks pending pile up
				return r.handler(p)
			}); err != nil {
				t.Fatal(err)
			}
			all := payloads("m", 60)
			for _, p := range all {
				publish(t, b, topic, []byte(p))
			}
			eventually(t, func() bool { return r.has(all...) }, "every message")
			checkNoSpin(t, pulls, 3*time.Second, 5) // MaxRequestExpires 1s: one a second
			if n := countLines(out, "level=WARN"); n > 0 {
				t.Errorf("%d warnings, want none:\n%s", n, out.String())
			}
		})
	}
}

// Two subscriptions of one group on a consumer that admits one waiting pull
// request: the one refused (409 Exceeded MaxWaiting) backs off, nothing is
// lost, and the fetch loops do not spin.
func TestPullMaxWaitingSharedByTwoBrokers(t *testing.T) {
	s := natstest.Start(t)
	topic := natstest.Topic(t, "pull.waiting")
	pulls := pullCounter(t, s, topic)
	out, log := warnLog()
	cfg := natsjs.WithConsumerConfig(func(c *jetstream.ConsumerConfig) { c.MaxWaiting = 1 })
	var r received
	var brokers []*natsjs.Broker
	for range 2 {
		_, js := connect(t, s)
		b := newBroker(t, js, natsjs.WithLogger(log), cfg)
		if err := b.Subscribe(topic, r.handler); err != nil {
			t.Fatal(err)
		}
		brokers = append(brokers, b)
	}
	all := payloads("m", 40)
	for _, p := range all {
		publish(t, brokers[0], topic, []byte(p))
	}
	eventually(t, func() bool { return r.has(all...) }, "every message")
	checkNoSpin(t, pulls, 3*time.Second, 10)
	t.Logf("%d warnings:\n%s", countLines(out, "level=WARN"), out.String())
}

// Sanity: a server restart while messages are fetched and in handlers loses
// none of them.
func TestPullServerRestartMidFetch(t *testing.T) {
	natstest.RequireControl(t)
	s := natstest.Start(t)
	_, js := connect(t, s)
	topic := natstest.Topic(t, "pull.restart")
	b := newBroker(t, js, natsjs.WithConcurrency(2), natsjs.WithPrefetch(4), natsjs.WithAckWait(2*time.Second))
	var r received
	var started atomic.Int64
	if err := b.Subscribe(topic, func(p []byte) error {
		started.Add(1)
		time.Sleep(20 * time.Millisecond)
		return r.handler(p)
	}); err != nil {
		t.Fatal(err)
	}
	all := payloads("m", 40)
	for _, p := range all {
		publish(t, b, topic, []byte(p))
	}
	eventually(t, func() bool { return started.Load() >= 5 }, "handling under way")
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return r.has(all...) }, "every message after the restart")
}
