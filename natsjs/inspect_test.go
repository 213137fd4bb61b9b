package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

func newInspector(t *testing.T, js jetstream.JetStream, opts ...natsjs.Option) *natsjs.Inspector {
	t.Helper()
	in, err := natsjs.NewInspector(js, append([]natsjs.Option{natsjs.WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func inspectCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

func topicInfo(t *testing.T, in relay.Inspector, topic string) relay.TopicInfo {
	t.Helper()
	ti, err := in.Topic(inspectCtx(t), topic)
	if err != nil {
		t.Fatalf("Topic(%q): %v", topic, err)
	}
	return ti
}

func group(t *testing.T, ti relay.TopicInfo, name string) relay.GroupInfo {
	t.Helper()
	for _, g := range ti.Groups {
		if g.Group == name {
			return g
		}
	}
	t.Fatalf("topic %q has no group %q: %+v", ti.Topic, name, ti.Groups)
	return relay.GroupInfo{}
}

// collect returns what DeadLetters yields, failing t on an error.
func collect(t *testing.T, in relay.Inspector, topic string, f relay.DeadLetterFilter) []relay.DeadLetter {
	t.Helper()
	var dls []relay.DeadLetter
	for dl, err := range in.DeadLetters(inspectCtx(t), topic, f) {
		if err != nil {
			t.Fatalf("DeadLetters(%q): %v", topic, err)
		}
		dls = append(dls, dl)
	}
	return dls
}

func ids(dls []relay.DeadLetter) []string {
	out := make([]string, len(dls))
	for i, dl := range dls {
		out[i] = dl.ID
	}
	return out
}

// publishWatermill publishes payloads on topic with metadata md, returning
// their UUIDs.
func publishWatermill(t *testing.T, js jetstream.JetStream, topic string, md map[string]string, payloads ...string) []string {
	t.Helper()
	p, err := natsjs.NewPublisher(js, natsjs.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var uuids []string
	for _, payload := range payloads {
		m := message.NewMessage(watermill.NewUUID(), []byte(payload))
		for k, v := range md {
			m.Metadata.Set(k, v)
		}
		if err := p.Publish(topic, m); err != nil {
			t.Fatal(err)
		}
		uuids = append(uuids, m.UUID)
	}
	return uuids
}

// The figures an operator reads must be those the test arranged: published,
// pending (one message held by its handler, redelivered once), dead letters
// (poison messages past max deliver), and the lag of a group that consumed
// nothing.
func TestInspectorTopicFigures(t *testing.T) {
	// It lists every stream of the server and names them exactly: it needs
	// a server of its own, also when NATS_URL names a shared one.
	s := natstest.StartEmbedded(t, natstest.Config{})
	_, js := connect(t, s)
	const (
		topic  = "orders"
		n      = 10
		poison = 3
		held   = "held"
	)
	// A group whose consumer exists and that reads nothing: everything is lag.
	later := newBroker(t, js, natsjs.WithGroup("later"))
	if err := later.Subscribe(topic, func([]byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := later.Close(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	pub := newBroker(t, js, natsjs.WithGroup("publisher"))
	for i := 1; i <= n; i++ {
		payload := "ok-" + strconv.Itoa(i)
		switch {
		case i == 3:
			payload = held
		case i > n-poison:
			payload = "poison-" + strconv.Itoa(i)
		}
		publish(t, pub, topic, []byte(payload))
	}

	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	var mu sync.Mutex
	attempts := map[string]int{}
	workers := newBroker(t, js, natsjs.WithGroup("workers"), natsjs.WithMaxDeliver(2),
		natsjs.WithBackoff(10*time.Millisecond, 50*time.Millisecond), natsjs.WithConcurrency(4), natsjs.WithPrefetch(0))
	if err := workers.Subscribe(topic, func(p []byte) error {
		mu.Lock()
		attempts[string(p)]++
		a := attempts[string(p)]
		mu.Unlock()
		switch {
		case string(p) == held && a == 1:
			return errors.New("not yet")
		case string(p) == held:
			<-release // pending until the test ends
			return nil
		case strings.HasPrefix(string(p), "poison-"):
			return fmt.Errorf("cannot parse %s", p)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // runs before the broker's Close

	in := newInspector(t, js)
	var ti relay.TopicInfo
	eventually(t, func() bool {
		ti = topicInfo(t, in, topic)
		w := group(t, ti, "workers")
		return ti.DeadLetters == poison && w.Pending == 1 && w.Lag == 0 && w.Redeliveries == 1
	}, "workers settled all but the held message")

	if ti.Topic != topic || ti.Store != "orders" || ti.Messages != n || ti.FirstID != "1" || ti.LastID != strconv.Itoa(n) {
		t.Errorf("topic figures = %+v, want %d messages, ids 1 to %d in stream orders", ti, n, n)
	}
	if ti.FirstTime.Before(start.Add(-time.Second)) || ti.LastTime.Before(ti.FirstTime) || time.Since(ti.LastTime) > wait {
		t.Errorf("first and last times %v, %v out of the test's span from %v", ti.FirstTime, ti.LastTime, start)
	}
	if got := len(ti.Groups); got != 2 || ti.Groups[0].Group != "later" || ti.Groups[1].Group != "workers" {
		t.Fatalf("groups = %+v, want later and workers (the publisher-only broker made no consumer)", ti.Groups)
	}
	l := ti.Groups[0]
	if l.Pending != 0 || l.Lag != n || !l.LagKnown || l.OldestPending != 0 || l.Redeliveries != 0 {
		t.Errorf("later = %+v, want no pending, lag %d", l, n)
	}
	if len(l.Consumers) != 1 || l.Consumers[0].Name != "later" || l.Consumers[0].Pending != 0 || l.Consumers[0].Idle <= 0 {
		t.Errorf("later's consumers = %+v, want one idle durable", l.Consumers)
	}
	w := ti.Groups[1]
	if !w.LagKnown || len(w.Consumers) != 1 || w.Consumers[0].Name != "workers" || w.Consumers[0].Pending != 1 {
		t.Errorf("workers = %+v, want one consumer with the held message pending", w)
	}
	// The held message is sequence 3: its age is the oldest pending one's.
	stream, err := js.Stream(inspectCtx(t), "orders")
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetMsg(inspectCtx(t), 3)
	if err != nil {
		t.Fatal(err)
	}
	if age := time.Since(m.Time); w.OldestPending <= 0 || w.OldestPending > age || w.OldestPending < age-wait {
		t.Errorf("oldest pending = %v, want the age of the held message (%v now)", w.OldestPending, age)
	}

	topics, err := in.Topics(inspectCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"orders", "orders.dead"}; !slices.Equal(topics, want) {
		t.Errorf("Topics = %q, want %q", topics, want)
	}
}

// arrangeDeadLetters publishes payloads on topic with metadata md and
// dead-letters each at once (relay.ErrPermanent, reason "bad <payload>"),
// returning their source UUIDs once all are dead letters; no subscription
// remains.
func arrangeDeadLetters(t *testing.T, js jetstream.JetStream, in relay.Inspector, topic string, md map[string]string, payloads ...string) []string {
	t.Helper()
	uuids := publishWatermill(t, js, topic, md, payloads...)
	b := newBroker(t, js, natsjs.WithConcurrency(1))
	if err := b.Subscribe(topic, func(p []byte) error {
		return fmt.Errorf("bad %s: %w", p, relay.ErrPermanent)
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		ti := topicInfo(t, in, topic)
		return ti.DeadLetters == uint64(len(payloads)) && group(t, ti, natsjs.DefaultGroup).Pending == 0
	}, "every message dead-lettered")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return uuids
}

func TestInspectorDeadLetters(t *testing.T) {
	s := natstest.StartEmbedded(t, natstest.Config{}) // fixed stream names: a server of its own
	_, js := connect(t, s)
	in := newInspector(t, js)
	const topic = "payments"
	md := map[string]string{"tenant": "acme"}
	uuids := arrangeDeadLetters(t, js, in, topic, md, "p1", "p2", "p3", "p4")

	all := collect(t, in, topic+".dead", relay.DeadLetterFilter{})
	if got := ids(all); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		t.Fatalf("oldest first = %q, want sequences 1 to 4", got)
	}
	for i, dl := range all {
		want := "p" + strconv.Itoa(i+1)
		if dl.Topic != topic+".dead" || string(dl.Payload) != want || dl.UUID != uuids[i] ||
			dl.SourceTopic != topic || dl.SourceID != strconv.Itoa(i+1) || dl.Attempts != 1 ||
			!strings.Contains(dl.Reason, "bad "+want) || dl.Metadata["tenant"] != "acme" ||
			dl.Metadata[relay.MetadataReason] != dl.Reason || dl.Time.IsZero() {
			t.Errorf("dead letter %d = %+v, want payload %s of source %d, uuid %s", i, dl, want, i+1, uuids[i])
		}
	}

	tests := []struct {
		name string
		f    relay.DeadLetterFilter
		want []string
	}{
		{"newest first", relay.DeadLetterFilter{Newest: true}, []string{"4", "3", "2", "1"}},
		{"limit", relay.DeadLetterFilter{Limit: 2}, []string{"1", "2"}},
		{"newest first with limit", relay.DeadLetterFilter{Newest: true, Limit: 3}, []string{"4", "3", "2"}},
		{"reason", relay.DeadLetterFilter{Reason: regexp.MustCompile(`bad p[23]\b`)}, []string{"2", "3"}},
		{"reason and limit", relay.DeadLetterFilter{Reason: regexp.MustCompile(`bad p[23]\b`), Limit: 1}, []string{"2"}},
		{"source topic", relay.DeadLetterFilter{SourceTopic: topic}, []string{"1", "2", "3", "4"}},
		{"other source topic", relay.DeadLetterFilter{SourceTopic: "refunds"}, nil},
		{"older than an hour", relay.DeadLetterFilter{OlderThan: time.Hour}, nil},
		{"ids", relay.DeadLetterFilter{IDs: []string{"3", "1", "99", "x"}}, []string{"1", "3"}},
		{"ids newest first", relay.DeadLetterFilter{IDs: []string{"1", "3"}, Newest: true}, []string{"3", "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ids(collect(t, in, topic+".dead", tt.f)); !slices.Equal(got, tt.want) {
				t.Errorf("ids = %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("stopping early", func(t *testing.T) {
		n := 0
		for range in.DeadLetters(inspectCtx(t), topic+".dead", relay.DeadLetterFilter{}) {
			n++
			break
		}
		if n != 1 {
			t.Errorf("yielded %d after break", n)
		}
	})
	t.Run("unknown topic", func(t *testing.T) {
		for _, err := range in.DeadLetters(inspectCtx(t), "nothing.dead", relay.DeadLetterFilter{}) {
			if !errors.Is(err, relay.ErrUnknownTopic) {
				t.Errorf("error = %v, want ErrUnknownTopic", err)
			}
		}
	})
	t.Run("invalid topic", func(t *testing.T) {
		for _, err := range in.DeadLetters(inspectCtx(t), "a.*", relay.DeadLetterFilter{}) {
			if !errors.Is(err, relay.ErrInvalidTopic) {
				t.Errorf("error = %v, want ErrInvalidTopic", err)
			}
		}
	})
}

// Newest first reads the stream backwards in windows of sequences; holes
// (purged dead letters) and windows without a message must not hide any.
func TestInspectorDeadLettersNewestFirstAcrossWindows(t *testing.T) {
	s := natstest.StartEmbedded(t, natstest.Config{}) // fixed stream names: a server of its own
	_, js := connect(t, s)
	in := newInspector(t, js)
	const dlt = "bulk.dead"
	const n, gapFrom, gapTo = 1000, 200, 900
	pub := newBroker(t, js)
	for i := 1; i <= n; i++ {
		publish(t, pub, dlt, []byte(strconv.Itoa(i)))
	}
	// Purge 200..900: two whole windows of 256 sequences without a message.
	for _, dl := range collect(t, in, dlt, relay.DeadLetterFilter{}) {
		if seq, _ := strconv.Atoi(dl.ID); seq >= gapFrom && seq <= gapTo {
			if err := in.Purge(inspectCtx(t), dl); err != nil {
				t.Fatal(err)
			}
		}
	}
	var want []string
	for i := n; i >= 1; i-- {
		if i < gapFrom || i > gapTo {
			want = append(want, strconv.Itoa(i))
		}
	}
	if got := ids(collect(t, in, dlt, relay.DeadLetterFilter{Newest: true})); !slices.Equal(got, want) {
		t.Errorf("newest first: %d ids %q..., want %d", len(got), got[:min(5, len(got))], len(want))
	}
	slices.Reverse(want)
	if got := ids(collect(t, in, dlt, relay.DeadLetterFilter{})); !slices.Equal(got, want) {
		t.Errorf("oldest first: %d ids, want %d", len(got), len(want))
	}
}

func TestInspectorRedrive(t *testing.T) {
	s := natstest.StartEmbedded(t, natstest.Config{}) // fixed stream names: a server of its own
	_, js := connect(t, s)
	in := newInspector(t, js)
	const topic = "shipments"
	arrangeDeadLetters(t, js, in, topic, map[string]string{"tenant": "acme"}, "s1", "s2")
	dls := collect(t, in, topic+".dead", relay.DeadLetterFilter{})
	before := topicInfo(t, in, topic).Messages

	t.Run("to its source", func(t *testing.T) {
		dl := dls[0]
		if err := in.Redrive(inspectCtx(t), dl, ""); err != nil {
			t.Fatal(err)
		}
		stream, err := js.Stream(inspectCtx(t), natsjs.StreamName(topic))
		if err != nil {
			t.Fatal(err)
		}
		m, err := stream.GetLastMsgForSubject(inspectCtx(t), topic)
		if err != nil {
			t.Fatal(err)
		}
		uuid := m.Header.Get(natsjs.UUIDHeader)
		if string(m.Data) != "s1" || uuid == "" || uuid == dl.UUID || m.Header.Get(nats.MsgIdHdr) != uuid {
			t.Errorf("redriven message: payload %q, uuid %q, msg id %q; want s1 under a new uuid (dead letter's %q)",
				m.Data, uuid, m.Header.Get(nats.MsgIdHdr), dl.UUID)
		}
		if got := m.Header.Get(relay.MetadataRedrivenFrom); got != topic+".dead/"+dl.ID {
			t.Errorf("%s = %q, want %q", relay.MetadataRedrivenFrom, got, topic+".dead/"+dl.ID)
		}
		if m.Header.Get("tenant") != "acme" || m.Header.Get(relay.MetadataReason) != "" || m.Header.Get(relay.MetadataAttempts) != "" {
			t.Errorf("redriven headers = %v, want the user's metadata without relay's dead-letter keys", m.Header)
		}
		ti := topicInfo(t, in, topic)
		if ti.Messages != before+1 || ti.DeadLetters != 1 {
			t.Errorf("after redrive: %d messages, %d dead letters; want %d and 1", ti.Messages, ti.DeadLetters, before+1)
		}
		if got := ids(collect(t, in, topic+".dead", relay.DeadLetterFilter{})); !slices.Equal(got, []string{dls[1].ID}) {
			t.Errorf("dead letters left = %q, want %q", got, dls[1].ID)
		}
	})
	t.Run("again once gone", func(t *testing.T) {
		if err := in.Redrive(inspectCtx(t), dls[0], ""); !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Errorf("error = %v, want ErrMsgNotFound (nothing moves)", err)
		}
		if got := topicInfo(t, in, topic).Messages; got != before+1 {
			t.Errorf("messages = %d, want %d", got, before+1)
		}
	})
	t.Run("to an invalid topic moves nothing", func(t *testing.T) {
		for _, to := range []string{"a.*", " x", "a..b"} {
			if err := in.Redrive(inspectCtx(t), dls[1], to); !errors.Is(err, relay.ErrInvalidTopic) {
				t.Errorf("Redrive to %q: %v, want ErrInvalidTopic", to, err)
			}
		}
		ti := topicInfo(t, in, topic)
		if ti.Messages != before+1 || ti.DeadLetters != 1 {
			t.Errorf("after refused redrives: %d messages, %d dead letters; want %d and 1", ti.Messages, ti.DeadLetters, before+1)
		}
	})
	t.Run("to another topic", func(t *testing.T) {
		if err := in.Redrive(inspectCtx(t), dls[1], "shipments.retry"); err != nil {
			t.Fatal(err)
		}
		ti := topicInfo(t, in, "shipments.retry") // its stream created as the broker would
		if ti.Messages != 1 || ti.Store != natsjs.StreamName("shipments.retry") {
			t.Errorf("destination = %+v, want 1 message in stream %s", ti, natsjs.StreamName("shipments.retry"))
		}
		if got := topicInfo(t, in, topic).DeadLetters; got != 0 {
			t.Errorf("dead letters = %d, want 0", got)
		}
	})
}

func TestInspectorPurge(t *testing.T) {
	s := natstest.StartEmbedded(t, natstest.Config{}) // fixed stream names: a server of its own
	_, js := connect(t, s)
	in := newInspector(t, js)
	const topic = "refunds"
	arrangeDeadLetters(t, js, in, topic, nil, "r1", "r2")
	dls := collect(t, in, topic+".dead", relay.DeadLetterFilter{})
	for range 2 { // the second time it is already gone
		if err := in.Purge(inspectCtx(t), dls[0]); err != nil {
			t.Fatal(err)
		}
	}
	if got := ids(collect(t, in, topic+".dead", relay.DeadLetterFilter{})); !slices.Equal(got, []string{dls[1].ID}) {
		t.Errorf("dead letters left = %q, want %q", got, dls[1].ID)
	}
	// A dead letter whose sequence now holds another message is not deleted.
	other := dls[1]
	other.Time = other.Time.Add(-time.Hour)
	if err := in.Purge(inspectCtx(t), other); err != nil {
		t.Fatal(err)
	}
	if got := topicInfo(t, in, topic).DeadLetters; got != 1 {
		t.Errorf("dead letters = %d, want 1: a message that is not the dead letter was deleted", got)
	}
	if err := in.Purge(inspectCtx(t), relay.DeadLetter{Topic: "nothing.dead", ID: "1"}); !errors.Is(err, relay.ErrUnknownTopic) {
		t.Errorf("purge on an unknown topic: %v, want ErrUnknownTopic", err)
	}
}

func TestInspectorDeleteConsumer(t *testing.T) {
	s := natstest.StartEmbedded(t, natstest.Config{}) // fixed stream names: a server of its own
	_, js := connect(t, s)
	in := newInspector(t, js)
	const topic = "tasks"
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	busy := newBroker(t, js, natsjs.WithGroup("busy"), natsjs.WithPrefetch(0))
	if err := busy.Subscribe(topic, func([]byte) error { <-release; return nil }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unblock)                                      // before busy's Close
	idle := newBroker(t, js, natsjs.WithGroup("idle work")) // a name ConsumerName rewrites
	if err := idle.Subscribe(topic, func([]byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	publish(t, busy, topic, []byte("job"))
	eventually(t, func() bool {
		ti := topicInfo(t, in, topic)
		return group(t, ti, "busy").Pending == 1 && group(t, ti, natsjs.ConsumerName("idle work")).Lag == 0 &&
			group(t, ti, natsjs.ConsumerName("idle work")).Pending == 0
	}, "busy holds the job, idle work handled it")
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}

	idleName := natsjs.ConsumerName("idle work")
	tests := []struct {
		name                   string
		topic, group, consumer string
		want                   error
	}{
		{"pending", topic, "busy", "busy", relay.ErrConsumerPending},
		{"unknown group", topic, "nobody", "nobody", relay.ErrUnknownConsumer},
		{"not the group's durable", topic, "busy", "someone", relay.ErrUnknownConsumer},
		{"unknown topic", "nothing", "busy", "busy", relay.ErrUnknownTopic},
		{"invalid topic", "a.>", "busy", "busy", relay.ErrInvalidTopic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := in.DeleteConsumer(inspectCtx(t), tt.topic, tt.group, tt.consumer); !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
		})
	}
	if got := len(topicInfo(t, in, topic).Groups); got != 2 {
		t.Fatalf("groups = %d after refused deletions, want 2", got)
	}
	// By the relay group's name, then gone.
	if err := in.DeleteConsumer(inspectCtx(t), topic, "idle work", idleName); err != nil {
		t.Fatal(err)
	}
	ti := topicInfo(t, in, topic)
	if len(ti.Groups) != 1 || ti.Groups[0].Group != "busy" {
		t.Errorf("groups = %+v, want busy only", ti.Groups)
	}
	if err := in.DeleteConsumer(inspectCtx(t), topic, idleName, idleName); !errors.Is(err, relay.ErrUnknownConsumer) {
		t.Errorf("deleting it again: %v, want ErrUnknownConsumer", err)
	}
	// Once its message is acknowledged, busy goes too, by its durable's name.
	unblock()
	eventually(t, func() bool { return group(t, topicInfo(t, in, topic), "busy").Pending == 0 }, "busy acknowledged")
	if err := busy.Close(); err != nil {
		t.Fatal(err)
	}
	if err := in.DeleteConsumer(inspectCtx(t), topic, "busy", "busy"); err != nil {
		t.Fatal(err)
	}
	if got := topicInfo(t, in, topic).Groups; len(got) != 0 {
		t.Errorf("groups = %+v, want none", got)
	}
}

// What relay did not write is reported and listed with what it has, never
// crashed on.
func TestInspectorForeignStreamsAndDeadLetters(t *testing.T) {
	// It lists every stream of the server and names them exactly: it needs
	// a server of its own, also when NATS_URL names a shared one.
	s := natstest.StartEmbedded(t, natstest.Config{})
	_, js := connect(t, s)
	logs, log := warnLog()
	in := newInspector(t, js, natsjs.WithLogger(log))
	ctx := inspectCtx(t)
	// Another tool's streams: one under a name that is a topic's stream
	// name, capturing other subjects, one capturing a wildcard.
	for _, sc := range []jetstream.StreamConfig{
		{Name: "audit", Subjects: []string{"audit.log"}},
		{Name: "WM_events", Subjects: []string{"events.>"}},
	} {
		if _, err := js.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	pub := newBroker(t, js)
	publish(t, pub, "orders", []byte("one"))
	publish(t, pub, "events.created", []byte("kept by the wildcard stream"))
	// A dead letter published raw by another client: no relay metadata.
	if _, err := js.Publish(ctx, "orders.dead", []byte("raw"), jetstream.WithMsgID("raw-1")); err != nil {
		if !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) {
			t.Fatal(err)
		}
		publish(t, pub, "orders.dead", nil) // creates the stream; then again raw
		if _, err := js.Publish(ctx, "orders.dead", []byte("raw"), jetstream.WithMsgID("raw-1")); err != nil {
			t.Fatal(err)
		}
	}

	topics, err := in.Topics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"orders", "orders.dead"}; !slices.Equal(topics, want) {
		t.Errorf("Topics = %q, want %q", topics, want)
	}
	for _, stream := range []string{"audit", "WM_events"} {
		if countLines(logs, "stream skipped") == 0 || !strings.Contains(logs.String(), "stream="+stream) {
			t.Errorf("no Warn record names the skipped stream %s in:\n%s", stream, logs.String())
		}
	}

	_, err = in.Topic(ctx, "audit")
	if !errors.Is(err, natsjs.ErrForeignStream) || !errors.Is(err, relay.ErrUnknownTopic) || !strings.HasPrefix(err.Error(), `natsjs: inspect topic "audit": `) {
		t.Errorf("Topic(audit) = %v, want ErrForeignStream and ErrUnknownTopic", err)
	}
	if _, err := in.Topic(ctx, "nothing"); !errors.Is(err, relay.ErrUnknownTopic) || errors.Is(err, natsjs.ErrForeignStream) {
		t.Errorf("Topic(nothing) = %v, want ErrUnknownTopic alone", err)
	}
	// A topic kept in another tool's stream is found where the broker puts it.
	ti := topicInfo(t, in, "events.created")
	if ti.Store != "WM_events" || ti.Messages != 1 || ti.FirstID != ti.LastID || ti.FirstID == "" {
		t.Errorf("events.created = %+v, want 1 message in WM_events", ti)
	}

	var raw relay.DeadLetter
	for _, dl := range collect(t, in, "orders.dead", relay.DeadLetterFilter{}) {
		if string(dl.Payload) == "raw" {
			raw = dl
		}
	}
	if raw.ID == "" || raw.Reason != "" || raw.SourceTopic != "" || raw.Attempts != 0 || raw.UUID != "" || raw.Time.IsZero() {
		t.Fatalf("foreign dead letter = %+v, want it listed with payload and time only", raw)
	}
	if err := in.Redrive(ctx, raw, ""); !errors.Is(err, relay.ErrInvalidTopic) {
		t.Errorf("redrive without a source topic: %v, want ErrInvalidTopic", err)
	}
	if err := in.Redrive(ctx, raw, "orders"); err != nil {
		t.Fatal(err)
	}
	if got := topicInfo(t, in, "orders").Messages; got != 2 {
		t.Errorf("orders holds %d messages after redrive, want 2", got)
	}
}

// An unreachable server is the client's error with the package's prefix,
// within the caller's deadline.
func TestInspectorUnreachableServer(t *testing.T) {
	s := natstest.StartEmbedded(t, natstest.Config{}) // fixed stream names: a server of its own
	nc, js := connect(t, s)
	in := newInspector(t, js)
	nc.Close()
	ctx := inspectCtx(t)
	start := time.Now()
	_, err := in.Topics(ctx)
	if err == nil || !strings.HasPrefix(err.Error(), "natsjs: inspect topics: ") || !errors.Is(err, nats.ErrConnectionClosed) {
		t.Errorf("Topics = %v, want the connection's error with the prefix", err)
	}
	_, err = in.Topic(ctx, "orders")
	if err == nil || !strings.HasPrefix(err.Error(), `natsjs: inspect topic "orders": `) || !errors.Is(err, nats.ErrConnectionClosed) {
		t.Errorf("Topic = %v, want the connection's error with the prefix", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
}

// A server that went away, the connection still trying to reconnect, is an
// error within the caller's deadline, or within the request timeout when
// the caller gave none.
func TestInspectorServerDown(t *testing.T) {
	s := natstest.StartEmbedded(t, natstest.Config{}) // fixed stream names: a server of its own
	_, js := connect(t, s)
	in := newInspector(t, js, natsjs.WithRequestTimeout(time.Second))
	pub := newBroker(t, js)
	publish(t, pub, "orders", []byte("one"))
	s.Stop()
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"caller's deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 500*time.Millisecond)
		}},
		{"request timeout", func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			_, err := in.Topic(ctx, "orders")
			if err == nil || !strings.HasPrefix(err.Error(), `natsjs: inspect topic "orders": `) {
				t.Errorf("Topic = %v, want an error with the prefix", err)
			}
			for _, err := range in.DeadLetters(ctx, "orders", relay.DeadLetterFilter{}) {
				if err == nil || !strings.HasPrefix(err.Error(), `natsjs: inspect dead letters "orders": `) {
					t.Errorf("DeadLetters = %v, want an error with the prefix", err)
				}
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("took %v, want each call bounded by a second", took)
			}
		})
	}
}

func TestNewInspectorInvalidOptions(t *testing.T) {
	if _, err := natsjs.NewInspector(nil); !errors.Is(err, relay.ErrInvalidOption) {
		t.Errorf("nil JetStream: %v", err)
	}
	s := natstest.StartEmbedded(t, natstest.Config{}) // fixed stream names: a server of its own
	_, js := connect(t, s)
	if _, err := natsjs.NewInspector(js, natsjs.WithRequestTimeout(0)); !errors.Is(err, relay.ErrInvalidOption) {
		t.Errorf("zero request timeout: %v", err)
	}
}

// The dead letters a topic's figures count are those of its configured
// dead-letter topic.
func TestInspectorCountsTheConfiguredDeadLetterTopic(t *testing.T) {
	s := natstest.StartEmbedded(t, natstest.Config{}) // fixed stream names: a server of its own
	_, js := connect(t, s)
	dlq := natsjs.WithDeadLetterTopic(func(topic string) string { return "dlq." + topic })
	in := newInspector(t, js, dlq)
	b := newBroker(t, js, dlq)
	if err := b.Subscribe("mail", func([]byte) error { return relay.ErrPermanent }); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "mail", []byte("undeliverable"))
	eventually(t, func() bool { return topicInfo(t, in, "mail").DeadLetters == 1 }, "dead letter counted on dlq.mail")
	if got := ids(collect(t, in, "dlq.mail", relay.DeadLetterFilter{})); !slices.Equal(got, []string{"1"}) {
		t.Errorf("dead letters on dlq.mail = %q", got)
	}
	if got := topicInfo(t, newInspector(t, js), "mail").DeadLetters; got != 0 {
		t.Errorf("an inspector with the default naming counts %d on mail.dead, want 0", got)
	}
}
