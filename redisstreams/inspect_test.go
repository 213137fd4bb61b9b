package redisstreams_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/redisstreams"
)

func inspector(t *testing.T, rc redis.UniversalClient, opts ...redisstreams.Option) *redisstreams.Inspector {
	t.Helper()
	in, err := redisstreams.NewInspector(rc, opts...)
	if err != nil {
		t.Fatalf("NewInspector: %v", err)
	}
	return in
}

// collect drains a DeadLetters sequence, failing the test on its error.
func collect(t *testing.T, seq func(func(relay.DeadLetter, error) bool)) []relay.DeadLetter {
	t.Helper()
	var out []relay.DeadLetter
	for dl, err := range seq {
		if err != nil {
			t.Fatalf("DeadLetters: %v", err)
		}
		out = append(out, dl)
	}
	return out
}

func payloads(dls []relay.DeadLetter) []string {
	out := make([]string, len(dls))
	for i, dl := range dls {
		out[i] = string(dl.Payload)
	}
	return out
}

// arranged is a topic brought to a known state by arrange.
type arranged struct {
	topic, dead string
	ids         []string // of the topic's entries, in order
	holdAt      time.Time
	release     func()
}

// arrange publishes to a fresh topic, in this order: ok-1..ok-3 (consumed
// and acked by group g1), poison-1 and poison-2 (dead-lettered after two
// deliveries, published with metadata k=v), then hold (failed once, then
// held by consumer c2 of g1 until release) and rest-1..rest-4, which g1 has
// not read: Messages 10, g1 Pending 1, Lag 4, Redeliveries 1. Group g2 is
// created at "0" with no consumer: Lag 10. The dead-letter topic holds the
// two poison messages.
func arrange(t *testing.T, e *env) arranged {
	t.Helper()
	a := arranged{topic: e.topic("orders")}
	a.dead = a.topic + ".dead"
	pub, err := redisstreams.NewPublisher(e.rc)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	send := func(payloads ...string) {
		t.Helper()
		for _, p := range payloads {
			m := message.NewMessage(watermill.NewUUID(), []byte(p))
			m.Metadata.Set("k", "v")
			if err := pub.Publish(a.topic, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	send("ok-1", "ok-2", "ok-3", "poison-1")
	if err := e.rc.XGroupCreate(ctx(t), a.topic, "g2", "0").Err(); err != nil {
		t.Fatal(err)
	}

	b1 := broker(t, e.rc, fast(redisstreams.WithGroup("g1"), redisstreams.WithMaxDeliver(2),
		redisstreams.WithConsumer("c1"))...)
	acked := newRecorder()
	if err := b1.Subscribe(a.topic, func(p []byte) error {
		if strings.HasPrefix(string(p), "poison") {
			return fmt.Errorf("bad input %s", p)
		}
		acked.add(p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "3 acked, poison-1 dead-lettered", func() bool {
		return acked.distinct() == 3 && xlen(t, e.rc, a.dead) == 1
	})
	send("poison-2") // after poison-1 is dead, so that the dead letters' order is known
	eventually(t, 10*time.Second, "3 acked, 2 dead-lettered, none pending", func() bool {
		return acked.distinct() == 3 && xlen(t, e.rc, a.dead) == 2 && pendingCount(t, e.rc, a.topic, "g1") == 0
	})
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}

	a.holdAt = time.Now()
	send("hold", "rest-1", "rest-2", "rest-3", "rest-4")
	held := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	a.release = func() { once.Do(func() { close(release) }) }
	// With one handler and no prefetch, c2 reads nothing more while it holds
	// hold: rest-1..rest-4 stay unread.
	b2 := broker(t, e.rc, fast(redisstreams.WithGroup("g1"), redisstreams.WithConsumer("c2"),
		redisstreams.WithConcurrency(1), redisstreams.WithPrefetch(0))...)
	t.Cleanup(a.release) // before b2's Close, which waits for the handler
	if err := b2.Subscribe(a.topic, func(p []byte) error {
		close(held)
		<-release
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("hold not delivered within 10s")
	}
	// A second delivery of hold, as a claim after a failure makes it.
	var holdID string
	eventually(t, 5*time.Second, "hold pending on c2", func() bool {
		p, err := e.rc.XPendingExt(ctx(t), &redis.XPendingExtArgs{Stream: a.topic, Group: "g1", Start: "-", End: "+", Count: 10}).Result()
		if err == nil && len(p) == 1 {
			holdID = p[0].ID
		}
		return holdID != ""
	})
	if err := e.rc.XClaim(ctx(t), &redis.XClaimArgs{Stream: a.topic, Group: "g1", Consumer: "c2", Messages: []string{holdID}}).Err(); err != nil {
		t.Fatal(err)
	}
	xs, err := e.rc.XRange(ctx(t), a.topic, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range xs {
		a.ids = append(a.ids, x.ID)
	}
	return a
}

func TestInspectorTopicFigures(t *testing.T) {
	e := newEnv(t)
	a := arrange(t, e)
	in := inspector(t, e.rc)

	before := time.Now()
	info, err := in.Topic(ctx(t), a.topic)
	if err != nil {
		t.Fatalf("Topic: %v", err)
	}
	if info.Topic != a.topic || info.Store != a.topic || info.Messages != 10 || info.DeadLetters != 2 {
		t.Errorf("Topic = %+v, want 10 messages and 2 dead letters in key %q", info, a.topic)
	}
	if info.FirstID != a.ids[0] || info.LastID != a.ids[9] {
		t.Errorf("FirstID, LastID = %s, %s; want %s, %s", info.FirstID, info.LastID, a.ids[0], a.ids[9])
	}
	if d := time.Since(info.FirstTime); d < 0 || d > time.Minute || info.LastTime.Before(info.FirstTime) {
		t.Errorf("FirstTime %v, LastTime %v: not the ids' times", info.FirstTime, info.LastTime)
	}
	if len(info.Groups) != 2 || info.Groups[0].Group != "g1" || info.Groups[1].Group != "g2" {
		t.Fatalf("Groups = %+v, want g1 and g2", info.Groups)
	}
	g1, g2 := info.Groups[0], info.Groups[1]
	if g1.Pending != 1 || g1.Lag != 4 || !g1.LagKnown || g1.Redeliveries != 1 {
		t.Errorf("g1 = %+v, want pending 1, lag 4 known, 1 redelivery", g1)
	}
	// hold was stored after holdAt, and its age read after before.
	if max := before.Sub(a.holdAt) + time.Second; g1.OldestPending <= 0 || g1.OldestPending > max+time.Since(before) {
		t.Errorf("g1 OldestPending = %v, want in (0, %v]", g1.OldestPending, max)
	}
	if len(g1.Consumers) != 1 || g1.Consumers[0].Name != "c2" || g1.Consumers[0].Pending != 1 ||
		g1.Consumers[0].Idle < 0 || g1.Consumers[0].Idle > 10*time.Second {
		t.Errorf("g1 consumers = %+v, want c2 with 1 pending", g1.Consumers)
	}
	if g2.Pending != 0 || g2.Lag != 10 || !g2.LagKnown || g2.OldestPending != 0 || g2.Redeliveries != 0 || len(g2.Consumers) != 0 {
		t.Errorf("g2 = %+v, want lag 10 and nothing else", g2)
	}

	dinfo, err := in.Topic(ctx(t), a.dead)
	if err != nil {
		t.Fatalf("Topic(dead): %v", err)
	}
	if dinfo.Messages != 2 || len(dinfo.Groups) != 0 || dinfo.DeadLetters != 0 {
		t.Errorf("Topic(dead) = %+v, want 2 messages, no group", dinfo)
	}
}

func TestInspectorLagUnknownAfterDelete(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("t")
	publish(t, broker(t, e.rc, fast()...), topic, "a", "b", "c")
	if err := e.rc.XGroupCreate(ctx(t), topic, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	xs, _ := e.rc.XRange(ctx(t), topic, "-", "+").Result()
	if err := e.rc.XDel(ctx(t), topic, xs[1].ID).Err(); err != nil {
		t.Fatal(err)
	}
	info, err := inspector(t, e.rc).Topic(ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Groups) != 1 || info.Groups[0].LagKnown || info.Messages != 2 {
		t.Errorf("Topic = %+v, want 2 messages and one group with an unknown lag", info)
	}
}

func TestInspectorTopicsAndForeignKeys(t *testing.T) {
	e := newEnv(t)
	a := arrange(t, e)
	var logs bytes.Buffer
	var logMu sync.Mutex
	in := inspector(t, e.rc, redisstreams.WithLogger(slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))))
	str, foreign, empty := e.topic("cache"), e.topic("foreign"), e.topic("empty")
	if err := e.rc.Set(ctx(t), str, "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rc.XAdd(ctx(t), &redis.XAddArgs{Stream: foreign, Values: []any{"a", "b"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rc.XGroupCreateMkStream(ctx(t), empty, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rc.Set(ctx(t), e.topic("not a topic"), "x", 0).Err(); err != nil {
		t.Fatal(err)
	}

	all, err := in.Topics(ctx(t))
	if err != nil {
		t.Fatalf("Topics: %v", err)
	}
	var got []string
	for _, tp := range all {
		if strings.HasPrefix(tp, e.srv.KeyPrefix()) {
			got = append(got, tp)
		}
	}
	want := []string{empty, a.topic, a.dead}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Topics = %q, want %q", got, want)
	}
	if !slices.IsSorted(all) {
		t.Errorf("Topics not sorted: %q", all)
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if !strings.Contains(out, "level=WARN") {
		t.Errorf("no warning of the foreign keys: %s", out)
	}
	// On a server of its own the test's keys are the only foreign ones, so
	// the warning names them; on a shared REDIS_URL it may name others first.
	if os.Getenv("REDIS_URL") == "" && (!strings.Contains(out, str) || !strings.Contains(out, foreign)) {
		t.Errorf("no warning naming %q and %q: %s", str, foreign, out)
	}

	tests := []struct {
		name, topic string
		foreign     bool
	}{
		{"unknown topic", e.topic("nope"), false},
		{"a string key", str, true},
		{"a stream relay did not write", foreign, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := in.Topic(ctx(t), tc.topic)
			if !errors.Is(err, relay.ErrUnknownTopic) || errors.Is(err, redisstreams.ErrForeignKey) != tc.foreign {
				t.Errorf("Topic(%q) = %v; want ErrUnknownTopic, ErrForeignKey %v", tc.topic, err, tc.foreign)
			}
			if err != nil && !strings.HasPrefix(err.Error(), `redisstreams: inspect topic "`+tc.topic+`": `) {
				t.Errorf("error %q lacks the package, op and topic", err)
			}
			n := 0
			for _, err := range in.DeadLetters(ctx(t), tc.topic, relay.DeadLetterFilter{}) {
				n++
				if tc.name != "a stream relay did not write" && !errors.Is(err, relay.ErrUnknownTopic) {
					t.Errorf("DeadLetters(%q) yielded %v, want ErrUnknownTopic", tc.topic, err)
				}
			}
			if n != 1 {
				t.Errorf("DeadLetters(%q) yielded %d values, want 1", tc.topic, n)
			}
		})
	}
	if _, err := in.Topic(ctx(t), "bad topic"); !errors.Is(err, relay.ErrInvalidTopic) {
		t.Errorf("Topic(invalid) = %v, want ErrInvalidTopic", err)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// deadLetterEnv is a dead-letter topic holding poison-1 and poison-2 (relay's,
// with reasons "bad input poison-1/2"), then a raw entry with only a payload
// field, as a foreign tool writes it.
func deadLetterEnv(t *testing.T) (*env, arranged, *redisstreams.Inspector) {
	t.Helper()
	e := newEnv(t)
	a := arrange(t, e)
	a.release()
	if err := e.rc.XAdd(ctx(t), &redis.XAddArgs{Stream: a.dead, Values: []any{"payload", "raw"}}).Err(); err != nil {
		t.Fatal(err)
	}
	return e, a, inspector(t, e.rc)
}

func TestInspectorDeadLetters(t *testing.T) {
	_, a, in := deadLetterEnv(t)
	all := collect(t, in.DeadLetters(ctx(t), a.dead, relay.DeadLetterFilter{}))
	if got := payloads(all); !slices.Equal(got, []string{"poison-1", "poison-2", "raw"}) {
		t.Fatalf("DeadLetters = %q", got)
	}
	p1, raw := all[0], all[2]
	if p1.Topic != a.dead || p1.SourceTopic != a.topic || p1.SourceID != a.ids[3] || p1.Attempts != 2 ||
		p1.Reason != "bad input poison-1" || p1.UUID == "" || p1.Metadata["k"] != "v" || p1.ID == "" ||
		time.Since(p1.Time) > time.Minute {
		t.Errorf("poison-1 = %+v", p1)
	}
	if raw.SourceTopic != "" || raw.Reason != "" || raw.Attempts != 0 || raw.UUID != "" || raw.ID == "" {
		t.Errorf("raw = %+v, want only payload, id and time", raw)
	}

	tests := []struct {
		name string
		f    relay.DeadLetterFilter
		want []string
	}{
		{"newest first", relay.DeadLetterFilter{Newest: true}, []string{"raw", "poison-2", "poison-1"}},
		{"reason", relay.DeadLetterFilter{Reason: regexp.MustCompile(`input poison-2$`)}, []string{"poison-2"}},
		{"source topic", relay.DeadLetterFilter{SourceTopic: a.topic}, []string{"poison-1", "poison-2"}},
		{"limit", relay.DeadLetterFilter{Limit: 2}, []string{"poison-1", "poison-2"}},
		{"limit newest", relay.DeadLetterFilter{Limit: 1, Newest: true}, []string{"raw"}},
		{"ids", relay.DeadLetterFilter{IDs: []string{raw.ID, p1.ID, "0-1", "garbage"}}, []string{"poison-1", "raw"}},
		{"ids newest", relay.DeadLetterFilter{IDs: []string{p1.ID, raw.ID}, Newest: true}, []string{"raw", "poison-1"}},
		{"older than an hour", relay.DeadLetterFilter{OlderThan: time.Hour}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := payloads(collect(t, in.DeadLetters(ctx(t), a.dead, tc.f)))
			if !slices.Equal(got, tc.want) && (len(got) != 0 || len(tc.want) != 0) {
				t.Errorf("DeadLetters = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestInspectorDeadLettersPages(t *testing.T) {
	e := newEnv(t)
	dead := e.topic("t.dead")
	const n = 250 // pages of 100: two full, one part
	p := e.rc.Pipeline()
	for i := range n {
		p.XAdd(ctx(t), &redis.XAddArgs{Stream: dead, Values: []any{"payload", fmt.Sprint(i)}})
	}
	if _, err := p.Exec(ctx(t)); err != nil {
		t.Fatal(err)
	}
	in := inspector(t, e.rc)
	for _, newest := range []bool{false, true} {
		got := payloads(collect(t, in.DeadLetters(ctx(t), dead, relay.DeadLetterFilter{Newest: newest})))
		if len(got) != n {
			t.Fatalf("newest %v: %d dead letters, want %d", newest, len(got), n)
		}
		for i, s := range got {
			want := i
			if newest {
				want = n - 1 - i
			}
			if s != fmt.Sprint(want) {
				t.Fatalf("newest %v: #%d is %s, want %d", newest, i, s, want)
			}
		}
	}
	// A break stops the reads at once.
	seen := 0
	for range in.DeadLetters(ctx(t), dead, relay.DeadLetterFilter{}) {
		if seen++; seen == 3 {
			break
		}
	}
	if seen != 3 {
		t.Errorf("break after 3: saw %d", seen)
	}
}

func TestInspectorRedrive(t *testing.T) {
	e, a, in := deadLetterEnv(t)
	dls := collect(t, in.DeadLetters(ctx(t), a.dead, relay.DeadLetterFilter{}))
	p1, raw := dls[0], dls[2]
	before := xlen(t, e.rc, a.topic)

	if err := in.Redrive(ctx(t), p1, ""); err != nil {
		t.Fatalf("Redrive: %v", err)
	}
	xs, err := e.rc.XRevRangeN(ctx(t), a.topic, "+", "-", 1).Result()
	if err != nil || len(xs) != 1 || xlen(t, e.rc, a.topic) != before+1 {
		t.Fatalf("no new entry on %s: %v %v", a.topic, xs, err)
	}
	sub := collect(t, in.DeadLetters(ctx(t), a.topic, relay.DeadLetterFilter{IDs: []string{xs[0].ID}}))
	if len(sub) != 1 {
		t.Fatalf("redriven entry not read back: %v", sub)
	}
	m := sub[0]
	if m.UUID == "" || m.UUID == p1.UUID || string(m.Payload) != "poison-1" || m.Metadata["k"] != "v" ||
		m.Metadata[relay.MetadataRedrivenFrom] != a.dead+"/"+p1.ID || m.Reason != "" || m.SourceTopic != "" {
		t.Errorf("redriven = %+v", m)
	}
	left := payloads(collect(t, in.DeadLetters(ctx(t), a.dead, relay.DeadLetterFilter{})))
	if !slices.Equal(left, []string{"poison-2", "raw"}) {
		t.Errorf("dead letters after redrive = %q", left)
	}

	t.Run("to an invalid topic moves nothing", func(t *testing.T) {
		for _, to := range []string{"bad topic", "a..b"} {
			if err := in.Redrive(ctx(t), dls[1], to); !errors.Is(err, relay.ErrInvalidTopic) {
				t.Errorf("Redrive to %q = %v, want ErrInvalidTopic", to, err)
			}
		}
		// A foreign dead letter has no source topic to go back to.
		if err := in.Redrive(ctx(t), raw, ""); !errors.Is(err, relay.ErrInvalidTopic) {
			t.Errorf("Redrive(raw, \"\") = %v, want ErrInvalidTopic", err)
		}
		if n := xlen(t, e.rc, a.dead); n != 2 {
			t.Errorf("dead letters = %d, want 2", n)
		}
		if n := xlen(t, e.rc, a.topic); n != before+1 {
			t.Errorf("topic length = %d, want %d", n, before+1)
		}
	})
	t.Run("a foreign dead letter to another topic", func(t *testing.T) {
		other := e.topic("other")
		if err := in.Redrive(ctx(t), raw, other); err != nil {
			t.Fatalf("Redrive: %v", err)
		}
		got := make(chan string, 1)
		b2 := broker(t, e.rc, fast()...)
		if err := b2.Subscribe(other, func(p []byte) error { got <- string(p); return nil }); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-got:
			if p != "raw" {
				t.Errorf("consumed %q, want raw", p)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("redriven message not consumed within 10s")
		}
		if n := xlen(t, e.rc, a.dead); n != 1 {
			t.Errorf("dead letters = %d, want 1", n)
		}
	})
}

func TestInspectorPurge(t *testing.T) {
	e, a, in := deadLetterEnv(t)
	dls := collect(t, in.DeadLetters(ctx(t), a.dead, relay.DeadLetterFilter{Reason: regexp.MustCompile("poison")}))
	for _, dl := range dls {
		if err := in.Purge(ctx(t), dl); err != nil {
			t.Fatalf("Purge: %v", err)
		}
	}
	if err := in.Purge(ctx(t), dls[0]); err != nil {
		t.Errorf("Purge of a purged dead letter = %v, want nil", err)
	}
	if got := payloads(collect(t, in.DeadLetters(ctx(t), a.dead, relay.DeadLetterFilter{}))); !slices.Equal(got, []string{"raw"}) {
		t.Errorf("after purge: %q", got)
	}
	if err := in.Purge(ctx(t), relay.DeadLetter{Topic: e.topic("gone.dead"), ID: "1-1"}); err != nil {
		t.Errorf("Purge on a missing stream = %v", err)
	}
	if err := in.Purge(ctx(t), relay.DeadLetter{Topic: a.dead}); !errors.Is(err, relay.ErrInvalidTopic) {
		t.Errorf("Purge without id = %v", err)
	}
}

func TestInspectorDeleteConsumer(t *testing.T) {
	e := newEnv(t)
	a := arrange(t, e)
	in := inspector(t, e.rc)
	if err := e.rc.XGroupCreateConsumer(ctx(t), a.topic, "g2", "idle-1").Err(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                   string
		topic, group, consumer string
		want                   error
	}{
		{"pending", a.topic, "g1", "c2", relay.ErrConsumerPending},
		{"unknown group", a.topic, "nope", "c2", relay.ErrUnknownConsumer},
		{"unknown consumer", a.topic, "g1", "nope", relay.ErrUnknownConsumer},
		{"unknown topic", e.topic("nope"), "g1", "c2", relay.ErrUnknownTopic},
		{"idle", a.topic, "g2", "idle-1", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := in.DeleteConsumer(ctx(t), tc.topic, tc.group, tc.consumer)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("DeleteConsumer = %v, want %v", err, tc.want)
			}
		})
	}
	if cs := consumers(t, e.rc, a.topic, "g1"); len(cs) != 1 || cs[0].Pending != 1 {
		t.Errorf("g1 consumers = %+v, want c2 kept with its pending entry", cs)
	}
	if cs := consumers(t, e.rc, a.topic, "g2"); len(cs) != 0 {
		t.Errorf("g2 consumers = %+v, want none", cs)
	}
}

func TestInspectorUnreachableServer(t *testing.T) {
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: time.Second, MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })
	in := inspector(t, rc)
	start := time.Now()
	_, err := in.Topic(ctx(t), "orders")
	if err == nil || !strings.HasPrefix(err.Error(), `redisstreams: inspect topic "orders": `) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Topic = %v, want the dial error with the package prefix and the address", err)
	}
	if _, err := in.Topics(ctx(t)); err == nil || !strings.HasPrefix(err.Error(), "redisstreams: inspect topics: ") {
		t.Errorf("Topics = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if _, err := redisstreams.NewInspector(nil); !errors.Is(err, relay.ErrInvalidOption) {
		t.Errorf("NewInspector(nil) = %v", err)
	}
	if _, err := redisstreams.NewInspector(rc, redisstreams.WithMaxLen(-1)); !errors.Is(err, relay.ErrInvalidOption) {
		t.Errorf("NewInspector(WithMaxLen(-1)) = %v", err)
	}
}

// xdelFails is a go-redis hook that fails every XDEL.
type xdelFails struct{}

func (xdelFails) DialHook(next redis.DialHook) redis.DialHook { return next }

func (xdelFails) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "xdel" {
			err := errors.New("injected XDEL failure")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (xdelFails) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A failure between the publish and the delete leaves the message in both
// places: a duplicate, never a loss.
func TestInspectorRedriveDeleteFailsKeepsBoth(t *testing.T) {
	e, a, _ := deadLetterEnv(t)
	rc := hookedClient(t, e)
	rc.AddHook(xdelFails{})
	in := inspector(t, rc)
	dl := collect(t, in.DeadLetters(ctx(t), a.dead, relay.DeadLetterFilter{Limit: 1}))[0]
	before := xlen(t, e.rc, a.topic)
	err := in.Redrive(ctx(t), dl, "")
	if err == nil || !strings.Contains(err.Error(), "injected XDEL failure") || !strings.Contains(err.Error(), "published as") {
		t.Fatalf("Redrive = %v, want the XDEL error, saying the message is published", err)
	}
	if n := xlen(t, e.rc, a.topic); n != before+1 {
		t.Errorf("topic length %d, want %d: the message is published", n, before+1)
	}
	if n := xlen(t, e.rc, a.dead); n != 3 {
		t.Errorf("dead letters %d, want 3: the dead letter is kept", n)
	}
}

// Once the XADD is answered, a context canceled meanwhile does not stop the
// XDEL: nothing is left in both places.
func TestInspectorRedriveCanceledAfterPublishDeletes(t *testing.T) {
	e, a, _ := deadLetterEnv(t)
	rc := hookedClient(t, e)
	c, cancel := context.WithCancel(ctx(t))
	rc.AddHook(cancelAfterXAdd{cancel})
	in := inspector(t, rc)
	dl := collect(t, in.DeadLetters(ctx(t), a.dead, relay.DeadLetterFilter{Limit: 1}))[0]
	if err := in.Redrive(c, dl, ""); err != nil {
		t.Fatalf("Redrive = %v", err)
	}
	if c.Err() == nil {
		t.Fatal("the hook did not cancel")
	}
	if n := xlen(t, e.rc, a.dead); n != 2 {
		t.Errorf("dead letters %d, want 2", n)
	}
}

// cancelAfterXAdd is a go-redis hook that cancels once an XADD is answered.
type cancelAfterXAdd struct{ cancel context.CancelFunc }

func (h cancelAfterXAdd) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h cancelAfterXAdd) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if cmd.Name() == "xadd" {
			h.cancel()
		}
		return err
	}
}

func (h cancelAfterXAdd) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// Redeliveries reads at most MaxRedeliveryScan pending entries.
func TestInspectorRedeliveriesBounded(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("big")
	const n = redisstreams.MaxRedeliveryScan + 50
	if err := e.rc.XGroupCreateMkStream(ctx(t), topic, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	p := e.rc.Pipeline()
	for i := range n {
		p.XAdd(ctx(t), &redis.XAddArgs{Stream: topic, Values: []any{"payload", fmt.Sprint(i)}})
	}
	if _, err := p.Exec(ctx(t)); err != nil {
		t.Fatal(err)
	}
	xs, err := e.rc.XReadGroup(ctx(t), &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{topic, ">"},
		Count: n, Block: -1}).Result()
	if err != nil || len(xs) != 1 || len(xs[0].Messages) != n {
		t.Fatalf("XREADGROUP: %v", err)
	}
	// A second delivery of every entry.
	p = e.rc.Pipeline()
	for ids := xs[0].Messages; len(ids) > 0; {
		k := min(len(ids), 1000)
		batch := make([]string, k)
		for i := range batch {
			batch[i] = ids[i].ID
		}
		p.XClaimJustID(ctx(t), &redis.XClaimArgs{Stream: topic, Group: "g", Consumer: "c", Messages: batch})
		ids = ids[k:]
	}
	if _, err := p.Exec(ctx(t)); err != nil {
		t.Fatal(err)
	}
	// JUSTID does not count a delivery: claim without it.
	p = e.rc.Pipeline()
	for ids := xs[0].Messages; len(ids) > 0; {
		k := min(len(ids), 1000)
		batch := make([]string, k)
		for i := range batch {
			batch[i] = ids[i].ID
		}
		p.XClaim(ctx(t), &redis.XClaimArgs{Stream: topic, Group: "g", Consumer: "c", Messages: batch})
		ids = ids[k:]
	}
	if _, err := p.Exec(ctx(t)); err != nil {
		t.Fatal(err)
	}
	info, err := inspector(t, e.rc).Topic(ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	if g := info.Groups[0]; g.Pending != n || g.Redeliveries != redisstreams.MaxRedeliveryScan || g.Lag != 0 {
		t.Errorf("group = pending %d, redeliveries %d, lag %d; want %d, %d, 0", g.Pending, g.Redeliveries, g.Lag, n, redisstreams.MaxRedeliveryScan)
	}
}

// hookedClient is a client of e's server whose read and write timeouts are
// under the calls' deadlines, so that the Inspector uses it as it is, and
// its hooks run (go-redis v9.23.0 runs no AddHook hook on a WithTimeout
// clone).
func hookedClient(t *testing.T, e *env) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(e.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.ReadTimeout, opts.WriteTimeout = time.Second, time.Second
	rc := redis.NewClient(opts)
	t.Cleanup(func() { rc.Close() })
	return rc
}

func TestInspectorTail(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("tail")
	b := broker(t, e.rc, fast()...)
	publish(t, b, topic, "old")
	in := inspector(t, e.rc, redisstreams.WithBlockTimeout(100*time.Millisecond))

	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	got := make(chan relay.StoredMessage, 100)
	ended := make(chan error, 1)
	go func() {
		var err error
		for m, terr := range in.Tail(c, topic) {
			if terr != nil {
				err = terr
				break
			}
			got <- m
		}
		ended <- err
	}()
	// Tail starts after the call: publish until the first new message shows.
	var first relay.StoredMessage
	eventually(t, 10*time.Second, "no message tailed", func() bool {
		publish(t, b, topic, "new")
		select {
		case first = <-got:
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})
	if string(first.Payload) != "new" || first.Topic != topic || first.ID == "" || first.UUID == "" || first.Time.IsZero() {
		t.Errorf("tailed %+v, want a new message", first)
	}
	cancel()
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("Tail ended with %v, want no error after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Tail did not end within 5s of the cancel")
	}
	if gs, err := e.rc.XInfoGroups(ctx(t), topic).Result(); err != nil || len(gs) != 0 {
		t.Errorf("groups after Tail: %v %v, want none", gs, err)
	}

	n := 0
	for _, err := range in.Tail(ctx(t), e.topic("nope")) {
		n++
		if !errors.Is(err, relay.ErrUnknownTopic) {
			t.Errorf("Tail(unknown) = %v", err)
		}
	}
	if n != 1 {
		t.Errorf("Tail(unknown) yielded %d values, want 1", n)
	}
}
