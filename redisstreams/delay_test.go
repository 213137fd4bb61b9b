package redisstreams_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/redisstreams"
)

// publishAt schedules payloads on b, all due at at, from 8 goroutines.
func publishAt(t *testing.T, b *redisstreams.Broker, topic string, at time.Time, payloads []string) {
	t.Helper()
	work := make(chan string)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for p := range work {
				c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := b.PublishAt(c, topic, []byte(p), at)
				cancel()
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for _, p := range payloads {
		work <- p
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("PublishAt(%q): %v", topic, err)
	}
}

func delayedPayloads(prefix string, n int) []string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return ps
}

// TestDelayedMoversMoveEachEntryOnce runs three movers on one topic (the
// publisher's and two competing subscribers') and checks that every entry
// reached the stream once and was delivered once.
func TestDelayedMoversMoveEachEntryOnce(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("movers")
	const n = 500
	rec := newRecorder()
	group := redisstreams.WithGroup("movers")
	for range 2 {
		b := broker(t, e.rc, fast(group)...)
		if err := b.Subscribe(topic, func(p []byte) error { rec.add(p); return nil }); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
	}
	pub := broker(t, e.rc, fast()...)
	due := time.Now().Add(400 * time.Millisecond)
	publishAt(t, pub, topic, due, delayedPayloads("m", n))
	eventually(t, 20*time.Second, "every delayed entry delivered", func() bool { return rec.distinct() == n })
	time.Sleep(300 * time.Millisecond) // a window for a duplicate to show
	for _, p := range delayedPayloads("m", n) {
		if c := rec.count(p); c != 1 {
			t.Errorf("%s delivered %d times, want once", p, c)
		}
		if first := rec.deliveries(p)[0]; first.Before(due) {
			t.Errorf("%s delivered %v early", p, due.Sub(first))
		}
	}
	if got := xlen(t, e.rc, topic); got != n {
		t.Errorf("stream holds %d entries, want %d: an entry was moved twice or not at all", got, n)
	}
	if left, err := e.rc.ZCard(ctx(t), redisstreams.DelayedKey(topic)).Result(); err != nil || left != 0 {
		t.Errorf("sorted set holds %d entries (%v), want none", left, err)
	}
}

// TestDelayedSurvivesServerKillAndPublisherExit schedules entries, closes
// the broker that scheduled them (its mover stops), kills redis-server
// (SIGKILL, append-only file on), starts it again, and checks that a new
// subscriber's mover delivers every entry, none early.
func TestDelayedSurvivesServerKillAndPublisherExit(t *testing.T) {
	e := newEnv(t, redistest.Config{AppendOnly: true})
	topic := e.topic("kill")
	pub, err := redisstreams.NewBroker(e.rc, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	due := time.Now().Add(1500 * time.Millisecond)
	publishAt(t, pub, topic, due, delayedPayloads("k", 20))
	if err := pub.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.srv.Kill(); err != nil {
		t.Fatalf("kill redis-server: %v", err)
	}
	if err := e.srv.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	rec := newRecorder()
	b := broker(t, e.rc, fast()...)
	eventually(t, 20*time.Second, "Subscribe after the restart", func() bool {
		return b.Subscribe(topic, func(p []byte) error { rec.add(p); return nil }) == nil
	})
	eventually(t, 20*time.Second, "every delayed entry delivered after the restart", func() bool { return rec.distinct() == 20 })
	for _, p := range delayedPayloads("k", 20) {
		if first := rec.deliveries(p)[0]; first.Before(due) {
			t.Errorf("%s delivered %v early", p, due.Sub(first))
		}
	}
}
