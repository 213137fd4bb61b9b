package redisstreams_test

import (
	"errors"
	"testing"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/redisstreams"
)

// Seed defect 3: the dead-letter XADD's error was ignored and the entry
// acked, losing it. The dead-letter key is a plain string here, so XADD
// fails with WRONGTYPE: the entry must stay pending and be tried again, and
// reach the dead-letter stream once it can be written.
func TestDeadLetterWriteFailureKeepsEntryPending(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("payments")
	dead := topic + ".dead"
	if err := e.rc.Set(ctx(t), dead, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	b := broker(t, e.rc, fast()...)
	rec := newRecorder()
	if err := b.Subscribe(topic, func(p []byte) error {
		rec.add(p)
		return relay.Permanent(errors.New("cannot ever work"))
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, "p")
	eventually(t, 5*time.Second, "entry not delivered again after the dead-letter write failed", func() bool {
		return rec.count("p") >= 3
	})
	if n := pendingCount(t, e.rc, topic, redisstreams.DefaultGroup); n != 1 {
		t.Fatalf("%d entries pending while the dead letter cannot be written, want 1", n)
	}

	if err := e.rc.Del(ctx(t), dead).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "entry not dead-lettered once the dead-letter stream is writable", func() bool {
		n, err := e.rc.XLen(ctx(t), dead).Result()
		return err == nil && n == 1
	})
	eventually(t, 2*time.Second, "entry still pending after its dead letter was written", func() bool {
		return pendingCount(t, e.rc, topic, redisstreams.DefaultGroup) == 0
	})
	msgs, err := e.rc.XRange(ctx(t), dead, "-", "+").Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("XRANGE %s = %v, %v", dead, msgs, err)
	}
	if got := msgs[0].Values["payload"]; got != "p" {
		t.Errorf("dead letter payload = %q, want %q", got, "p")
	}
}
