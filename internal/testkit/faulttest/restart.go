package faulttest

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-relay/relay/pubsubtest"
)

// RunBrokerRestart publishes and consumes continuously while the server is
// taken down (NATS: shutdown; Redis: SIGKILL, with the append-only file
// fsynced on every write) and brought back. Publishers may get errors but
// never a false success: every message whose Publish returned nil must be
// consumed, and the clients must not spin while the server is down (CPU of
// the test process at most 1 core). Recovery is the longest time, over the restarts, from the server
// being back until every message whose Publish had started by then has been
// published (or failed) and, if confirmed, consumed.
//
// Budget: 1 restart with 1 s down (full: 3 restarts, 2 s down each), 4
// publishers at most ~200 messages/s each, publish timeout 3 s; everything
// consumed within 60 s of the end. It needs a server and skips without one.
func RunBrokerRestart(t *testing.T, b Backend) {
	if b.Server == nil {
		t.Skip("faulttest: the broker-restart case needs a server")
	}
	restarts := pick(1, 3)
	down := pick(time.Second, 2*time.Second)
	topic, group := names(t, b)
	cfg := pubsubtest.Config{Group: group, MaxDeliver: 20, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Concurrency: 16, AckWait: 2 * time.Second}
	addr := addrOf(b)
	l := NewLedger()

	pub := newBroker(t, b, addr, cfg)
	defer closeBroker(t, pub)
	cons := newBroker(t, b, addr, cfg)
	defer closeBroker(t, cons)
	consume(t, cons, topic, l)

	ld := startLoad(pub, topic, l, 4, 5*time.Millisecond, 3*time.Second)
	defer ld.halt()
	time.Sleep(time.Second) // steady state first

	var recovery time.Duration
	var cores float64 // the most CPU used while the server was down
	for i := range restarts {
		if err := b.Server.Stop(); err != nil {
			t.Fatalf("restart %d: stop server: %v", i+1, err)
		}
		cpu0, t0 := cpuTime(), time.Now()
		time.Sleep(down)
		cores = max(cores, (cpuTime()-cpu0).Seconds()/time.Since(t0).Seconds())
		if err := b.Server.Start(); err != nil {
			t.Fatalf("restart %d: start server: %v", i+1, err)
		}
		r := ld.caughtUp(l, 60*time.Second)
		if r < 0 {
			t.Fatalf("restart %d: messages confirmed before it not consumed within 60 s: %d missing, e.g. %v",
				i+1, len(l.Missing(l.Confirmed())), head(l.Missing(l.Confirmed())))
		}
		recovery = max(recovery, r)
		time.Sleep(time.Second)
	}
	ld.halt()
	if drained(l, 60*time.Second) < 0 {
		t.Errorf("%d confirmed messages never consumed, e.g. %v", len(l.Missing(l.Confirmed())), head(l.Missing(l.Confirmed())))
	}
	if cores > maxCPUCores {
		t.Errorf("%.2f CPU cores used while the server was down, want at most %.1f: a hot loop", cores, maxCPUCores)
	}
	messages, lost, dups := l.Tally()
	if lost != 0 {
		t.Errorf("lost %d messages whose Publish returned nil", lost)
	}
	if messages == 0 {
		t.Error("no publish succeeded")
	}
	report(t, "broker-restart", b, messages, lost, dups, recovery,
		fmt.Sprintf("restarts=%d down=%s cpu_cores_down=%.2f publish_errors=%d unconfirmed_delivered=%d dead_letters=%d",
			restarts, down, cores, l.Failed(), l.Unconfirmed(), l.DeadTotal()))
}
