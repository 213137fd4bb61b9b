package redisstreams_test

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit"
	"github.com/go-relay/relay/redisstreams"
)

// An entry whose earlier consumers took every allowed delivery and died
// without settling it (here a raw reader, then XCLAIM bumps: delivery counter
// = max deliver) is handled once more when the broker claims it, as
// delivery.Policy.Skip says (a Close's hand-back counts on some servers, so
// skipping it could dead-letter a message no handler saw): acked when the
// handler succeeds, dead-lettered at once, without a retry, when it fails.
func TestDeliveryPastMaxDeliverIsHandledOnceMore(t *testing.T) {
	const (
		maxDeliver = 3
		claim      = 300 * time.Millisecond
	)
	for _, tc := range []struct {
		name     string
		handler  error
		wantDead int64
	}{
		{"handler succeeds: acked", nil, 0},
		{"handler fails: dead-lettered without retry", errors.New("still failing"), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			topic, group := e.topic("poison"), "workers"
			if err := e.rc.XGroupCreateMkStream(ctx(t), topic, group, "0").Err(); err != nil {
				t.Fatal(err)
			}
			publish(t, broker(t, e.rc, fast()...), topic, "kills consumers")
			id := deliverAndDie(t, e, topic, group, maxDeliver)

			var called atomic.Int64
			b := broker(t, e.rc, fast(redisstreams.WithGroup(group), redisstreams.WithClaimTimeout(claim),
				redisstreams.WithMaxDeliver(maxDeliver))...)
			if err := b.Subscribe(topic, func([]byte) error { called.Add(1); return tc.handler }); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "entry past max deliver not settled", func() bool {
				return called.Load() >= 1 && pendingCount(t, e.rc, topic, group) == 0
			})
			time.Sleep(3 * claim / 2) // a retry or another claim would come within this
			if n := called.Load(); n != 1 {
				t.Errorf("handler called %d times, want once", n)
			}
			dead := topic + ".dead"
			if n := xlen(t, e.rc, dead); n != tc.wantDead {
				t.Fatalf("%d dead letters, want %d", n, tc.wantDead)
			}
			if tc.wantDead == 0 {
				return
			}
			msgs, err := e.rc.XRange(ctx(t), dead, "-", "+").Result()
			if err != nil || len(msgs) != 1 {
				t.Fatalf("XRANGE %s = %v, %v", dead, msgs, err)
			}
			if got := msgs[0].Values["payload"]; got != "kills consumers" {
				t.Errorf("dead letter payload %q, want %q", got, "kills consumers")
			}
			raw, _ := msgs[0].Values["metadata"].(string)
			var md map[string]string
			if err := msgpack.Unmarshal([]byte(raw), &md); err != nil {
				t.Fatalf("dead letter metadata: %v", err)
			}
			if md[relay.MetadataSourceID] != id || md[relay.MetadataSourceTopic] != topic {
				t.Errorf("dead letter metadata %v; want source id %s and topic %s", md, id, topic)
			}
			if md[relay.MetadataAttempts] != "4" {
				t.Errorf("dead letter attempts %q, want 4 (the claim is the fourth delivery)", md[relay.MetadataAttempts])
			}
			if r := md[relay.MetadataReason]; !strings.Contains(r, "still failing") {
				t.Errorf("dead letter reason %q, want the handler's error", r)
			}
		})
	}
}

// deliverAndDie delivers topic's only entry to a raw consumer of group n
// times (a read, then XCLAIM bumps) without acking it, and returns its id.
func deliverAndDie(t *testing.T, e *env, topic, group string, n int) string {
	t.Helper()
	res, err := e.rc.XReadGroup(ctx(t), &redis.XReadGroupArgs{Group: group, Consumer: "dead",
		Streams: []string{topic, ">"}, Count: 1, Block: -1}).Result()
	if err != nil || len(res) != 1 || len(res[0].Messages) != 1 {
		t.Fatalf("raw XREADGROUP = %v, %v; want 1 entry", res, err)
	}
	id := res[0].Messages[0].ID
	for range n - 1 {
		if err := e.rc.XClaim(ctx(t), &redis.XClaimArgs{Stream: topic, Group: group, Consumer: "dead",
			Messages: []string{id}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	p, err := e.rc.XPendingExt(ctx(t), &redis.XPendingExtArgs{Stream: topic, Group: group,
		Start: id, End: id, Count: 1}).Result()
	if err != nil || len(p) != 1 || p[0].RetryCount != int64(n) {
		t.Fatalf("XPENDING = %v, %v; want the entry delivered %d times", p, err, n)
	}
	return id
}

// Entries read ahead (prefetch) that no handler saw when the subscription
// stops are handed back: still pending, with the delivery counter as before
// the read and an idle time of the claim timeout, so that another consumer
// claims them at once and no delivery is counted that did not happen.
func TestCloseHandsBackEntriesReadAhead(t *testing.T) {
	const claim = 5 * time.Second
	e := newEnv(t)
	topic := e.topic("ahead")
	publish(t, broker(t, e.rc, fast()...), topic, "m1", "m2", "m3", "m4")
	b, err := redisstreams.NewBroker(e.rc, fast(redisstreams.WithConcurrency(1), redisstreams.WithClaimTimeout(claim))...)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	if err := b.Subscribe(topic, func([]byte) error {
		once.Do(func() { close(started) })
		<-release
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("handler not started")
	}
	time.AfterFunc(100*time.Millisecond, func() { close(release) })
	if err := testkit.CloseWithin(t, waitClose, b.Close, "Close once the handler was released"); err != nil {
		t.Fatal(err)
	}
	p, err := e.rc.XPendingExt(ctx(t), &redis.XPendingExtArgs{Stream: topic, Group: redisstreams.DefaultGroup,
		Start: "-", End: "+", Count: 10}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 3 {
		t.Fatalf("%d entries pending after Close, want the 3 read ahead: %v", len(p), p)
	}
	for _, x := range p {
		if x.RetryCount != 0 || x.Idle < claim {
			t.Errorf("entry %s handed back with delivery count %d and idle %v; want 0 and at least %v",
				x.ID, x.RetryCount, x.Idle, claim)
		}
	}
}
