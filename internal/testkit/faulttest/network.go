package faulttest

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/pubsubtest"
)

// Bounds of client activity through the proxy during an outage. A client in
// a hot loop reconnects or resends thousands of times a second; a client
// that backs off does it a few to a few dozen times.
const (
	maxAcceptsPerSec = 100  // reconnection attempts
	maxChunksPerSec  = 1000 // requests sent
	maxCPUCores      = 1.0  // CPU of the whole test process
)

// networkFault is one way to disturb the path between clients and server.
type networkFault struct {
	name string
	// start applies the fault, end lifts it.
	start, end func(p *Proxy)
	// outage says whether the fault stops traffic, so that the activity
	// bounds apply.
	outage bool
}

// RunNetworkCut resets every connection between the clients (a publisher
// and a consumer, both through a [Proxy]) and the server, and resets every
// new one for 2 s (full: 5 s), as an unreachable server would, while
// messages are published and consumed. Consumption must resume by itself,
// nothing confirmed may be lost, and the clients must not reconnect or
// resend in a hot loop during the outage. Recovery, in every network case, is
// the time from the end of the fault until every message whose Publish had
// started by then has been published (or failed) and, if confirmed, consumed.
//
// Budget: 2 publishers at most ~100 messages/s each, ack wait 1 s; 1 s of
// steady state, the outage, 1 s after; all consumed within 60 s.
func RunNetworkCut(t *testing.T, b Backend) {
	runNetwork(t, b, networkFault{
		name:   "network-cut",
		start:  func(p *Proxy) { p.Refuse(true); p.Cut() },
		end:    func(p *Proxy) { p.Refuse(false) },
		outage: true,
	}, pick(2*time.Second, 5*time.Second))
}

// RunNetworkLatency adds 400 ms (full: 800 ms) to every chunk of data in
// both directions for 3 s (full: 6 s), close to the 1 s ack wait for a round
// trip, while messages are published and consumed: nothing confirmed may be
// lost; duplicates are reported.
//
// Budget: as [RunNetworkCut].
func RunNetworkLatency(t *testing.T, b Backend) {
	spike := pick(400*time.Millisecond, 800*time.Millisecond)
	runNetwork(t, b, networkFault{
		name:  "network-latency",
		start: func(p *Proxy) { p.SetLatency(spike) },
		end:   func(p *Proxy) { p.SetLatency(0) },
	}, pick(3*time.Second, 6*time.Second))
}

// RunNetworkBlackHole swallows every byte between clients and server for
// 3 s (full: 10 s), three times the ack wait, without closing anything; on
// healing, the connections that lost data are reset. Consumption must resume
// by itself, nothing confirmed may be lost, and the clients must not resend
// or reconnect in a hot loop meanwhile.
//
// Budget: as [RunNetworkCut].
func RunNetworkBlackHole(t *testing.T, b Backend) {
	runNetwork(t, b, networkFault{
		name:   "network-blackhole",
		start:  func(p *Proxy) { p.BlackHole(true) },
		end:    func(p *Proxy) { p.BlackHole(false) },
		outage: true,
	}, pick(3*time.Second, 10*time.Second))
}

func runNetwork(t *testing.T, b Backend, f networkFault, length time.Duration) {
	if b.Server == nil {
		t.Skip("faulttest: network faults need a server")
	}
	p, err := NewProxy(b.Server.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() }) // after the clients' cleanups: registered first
	topic, group := names(t, b)
	cfg := pubsubtest.Config{Group: group, MaxDeliver: 50, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Concurrency: 8, AckWait: time.Second}
	l := NewLedger()

	ld, stop := steadyLoad(t, func() relay.Broker { return newBroker(t, b, p.Addr(), cfg) }, topic, l, "the fault")
	defer stop()

	a0, c0, cpu0, t0 := p.Accepted(), p.Chunks(), cpuTime(), time.Now()
	f.start(p)
	time.Sleep(length)
	a1, c1, cpu1, span := p.Accepted(), p.Chunks(), cpuTime(), time.Since(t0).Seconds()
	f.end(p)

	accepts, chunks, cores := float64(a1-a0)/span, float64(c1-c0)/span, (cpu1-cpu0).Seconds()/span
	if f.outage {
		if accepts > maxAcceptsPerSec {
			t.Errorf("%.0f connections/s during the outage, want at most %d: a reconnect hot loop", accepts, maxAcceptsPerSec)
		}
		if chunks > maxChunksPerSec {
			t.Errorf("%.0f requests/s during the outage, want at most %d: a retry hot loop", chunks, maxChunksPerSec)
		}
		if cores > maxCPUCores {
			t.Errorf("%.2f CPU cores used during the outage, want at most %.1f: a hot loop", cores, maxCPUCores)
		}
	}

	recovery := ld.caughtUp(l, 60*time.Second)
	if recovery < 0 {
		t.Errorf("consumption did not resume: %d confirmed messages not consumed 60 s after the fault ended, e.g. %v",
			len(l.Missing(l.Confirmed())), head(l.Missing(l.Confirmed())))
	}
	time.Sleep(time.Second)
	ld.halt()
	if drained(l, 60*time.Second) < 0 {
		t.Errorf("%d confirmed messages never consumed, e.g. %v", len(l.Missing(l.Confirmed())), head(l.Missing(l.Confirmed())))
	}
	messages, lost, dups := l.Tally()
	if lost != 0 {
		t.Errorf("lost %d messages whose Publish returned nil", lost)
	}
	report(t, f.name, b, messages, lost, dups, recovery,
		fmt.Sprintf("fault_length=%s conns_per_s=%.1f requests_per_s=%.1f cpu_cores=%.2f publish_errors=%d dropped_bytes=%d",
			length, accepts, chunks, cores, l.Failed(), p.Dropped()))
}
