package faulttest

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/pubsubtest"
)

// Failover is a clustered backend's nodes as the failover cases control
// them.
type Failover interface {
	// Fail takes down the node that takes the writes of topic (the
	// JetStream stream leader; the Redis master of the topic's slot) the way
	// the harness stops a node hardest, and returns once it is down. The
	// topic's stream exists when Fail is called.
	Fail(topic string) error
	// Recover starts the node Fail took down again with its data, and
	// returns once it is part of the cluster again.
	Recover() error
}

// ClusterBackend describes one clustered backend to the failover cases.
type ClusterBackend struct {
	// Name names the backend in test logs and RELIABILITY lines:
	// "natsjs-cluster".
	Name string
	// Failover controls the cluster's nodes.
	Failover Failover
	// NewBroker returns a broker of cfg.Group on a client of the whole
	// cluster, closed in t.Cleanup; the caller closes the broker.
	NewBroker func(t testing.TB, cfg pubsubtest.Config) (relay.Broker, error)
	// Fault names what Failover does in the RELIABILITY lines, "failover"
	// when empty: a Failover may also disrupt without taking a node down
	// ("reshard": the topic's slot moved to another master).
	Fault string
	// MayLoseAcknowledged is set where the server replicates asynchronously
	// (Redis without WAIT): a write answered by a master that dies before its
	// replica got it is lost although Publish returned nil. Lost messages
	// are then reported, not failed on.
	MayLoseAcknowledged bool

	// HelperTest names the test of the backend's test binary that calls
	// [HelperProcess] with a [NewBrokerFunc] taking HelperAddr as its addr,
	// for [RunFailoverDuringClaim], which skips when it is empty.
	HelperTest string
	// HelperAddr is the cluster as that NewBrokerFunc takes it: the nodes'
	// addresses, comma-separated.
	HelperAddr string

	// CutNode returns the "host:port" of the node that [RunClusterNetworkCut]
	// puts behind a [Proxy] for topic (NATS: the node the clients connect to
	// first; Redis: the master of the topic's slot). The case skips when
	// CutNode or NewBrokerVia is nil.
	CutNode func(topic string) (string, error)
	// NewBrokerVia is NewBroker with a client that reaches the node at node
	// through via (a Proxy's "host:port") and every other node directly.
	NewBrokerVia func(t testing.TB, cfg pubsubtest.Config, node, via string) (relay.Broker, error)

	// Partition cuts one node off from its clients and its peers, for
	// [RunClusterPartitionOfLeader] and [RunClusterPartitionOfFollower],
	// which skip when it or NewBrokerAt is nil.
	Partition Partition
	// NewBrokerAt is NewBroker with a client that connects to node (a name
	// Partition.Node returned) first, and notices within about 1.5 s that
	// it went silent.
	NewBrokerAt func(t testing.TB, cfg pubsubtest.Config, node string) (relay.Broker, error)

	// CloseBound is the backend's documented bound on Close once the
	// running handlers have returned, which [RunCloseDuringFailover]
	// asserts (with 2 s of slack for the handlers and a loaded machine).
	CloseBound time.Duration
	// LeakIgnore is what [RunCloseDuringFailover]'s goroutine check ignores
	// besides the goroutines running before the broker started: those of
	// servers of the cluster that run in the test process (an embedded
	// nats-server starts some when it takes a leadership over).
	LeakIgnore []goleak.Option
}

func (b ClusterBackend) backend() Backend { return Backend{Name: b.Name} }

func (b ClusterBackend) fault(during string) string {
	if b.Fault == "" {
		return "failover-" + during
	}
	return b.Fault + "-" + during
}

func clusterBroker(t testing.TB, b ClusterBackend, cfg pubsubtest.Config) relay.Broker {
	t.Helper()
	br, err := b.NewBroker(t, cfg)
	if err != nil {
		t.Fatalf("faulttest: new %s broker: %v", b.Name, err)
	}
	return br
}

// confirmedAfter reports whether a Publish of an id above id returned nil.
func (l *Ledger) confirmedAfter(id int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.confirmed {
		if c > id {
			return true
		}
	}
	return false
}

// firstConfirmedAfter sends, once a Publish of an id above id returned nil,
// the time since t0, or -1 after 60 s.
func firstConfirmedAfter(l *Ledger, id int, t0 time.Time) <-chan time.Duration {
	ch := make(chan time.Duration, 1)
	go func() {
		if waitFor(60*time.Second, func() bool { return l.confirmedAfter(id) }) {
			ch <- time.Since(t0)
		} else {
			ch <- -1
		}
	}()
	return ch
}

// RunFailoverDuringPublish publishes continuously, with a consumer running,
// while the node taking the topic's writes is taken down; later it is brought
// back. Publishers may get errors while the cluster elects or promotes a new
// leader, but every message whose Publish returned nil must be consumed
// (unless b.MayLoseAcknowledged). It reports the publish errors, the publish
// outage (from the failure, the call of Fail, until a Publish started after
// the takeover returned nil) and the recovery: the time from the failure
// until every message whose Publish had started by the time publishing
// worked again has been published (or failed) and, if confirmed, consumed.
// The node is brought back once publishing works again, or after 5 s when it
// does not (with WAIT for a replica, the failover took the only one).
//
// Budget: 1 failover (full: 3, each node back before the next), 4 publishers
// at most ~200 messages/s each, publish timeout 5 s; recovery within 60 s.
func RunFailoverDuringPublish(t *testing.T, b ClusterBackend) {
	failovers := pick(1, 3)
	topic, group := names(t, b.backend())
	cfg := pubsubtest.Config{Group: group, MaxDeliver: 20, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Concurrency: 16, AckWait: 2 * time.Second}
	l := NewLedger()
	pub := clusterBroker(t, b, cfg)
	defer closeBroker(t, pub)
	cons := clusterBroker(t, b, cfg)
	defer closeBroker(t, cons)
	consume(t, cons, topic, l)

	ld := startLoad(pub, topic, l, 4, 5*time.Millisecond, 5*time.Second)
	defer ld.halt()
	time.Sleep(time.Second) // steady state first, and the stream exists

	var recovery, outage time.Duration
	for i := range failovers {
		t0 := time.Now()
		if err := b.Failover.Fail(topic); err != nil {
			t.Fatalf("failover %d: %v", i+1, err)
		}
		id0 := int(ld.next.Load())
		back := firstConfirmedAfter(l, id0, t0)
		var r time.Duration
		recovered := false
		select {
		case r = <-back:
		case <-time.After(5 * time.Second):
			// Writes may need the node back (a WAIT for a replica, when
			// the failover promoted the only one): bring it back first.
			if err := b.Failover.Recover(); err != nil {
				t.Fatalf("failover %d: recover: %v", i+1, err)
			}
			recovered = true
			r = <-back
		}
		if r < 0 {
			t.Fatalf("failover %d: no Publish succeeded within 60 s", i+1)
		}
		outage = max(outage, r)
		if ld.caughtUp(l, 60*time.Second) < 0 && !b.MayLoseAcknowledged {
			t.Fatalf("failover %d: messages confirmed before it not consumed within 60 s: %d missing, e.g. %v",
				i+1, len(l.Missing(l.Confirmed())), head(l.Missing(l.Confirmed())))
		}
		recovery = max(recovery, time.Since(t0))
		if !recovered {
			time.Sleep(500 * time.Millisecond)
			if err := b.Failover.Recover(); err != nil {
				t.Fatalf("failover %d: recover: %v", i+1, err)
			}
		}
		time.Sleep(time.Second)
	}
	ld.halt()
	finish(t, b, b.fault("publish"), l, recovery,
		fmt.Sprintf("failovers=%d publish_errors=%d publish_outage=%s unconfirmed_delivered=%d",
			failovers, l.Failed(), outage.Round(time.Millisecond), l.Unconfirmed()))
}

// RunFailoverDuringConsume publishes a batch, then consumes it with a
// handler that takes about a millisecond, and takes down the node taking the
// topic's writes when half of it was handled; later the node is brought
// back. Every message must be handled; recovery is the time from the failure
// until the last one was.
//
// Budget: 1,000 messages (full: 5,000), 4 handlers at once; everything
// handled within 60 s of the failure.
func RunFailoverDuringConsume(t *testing.T, b ClusterBackend) {
	n := pick(1000, 5000)
	topic, group := names(t, b.backend())
	cfg := pubsubtest.Config{Group: group, MaxDeliver: 20, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Concurrency: 4, AckWait: 2 * time.Second}
	l := NewLedger()
	pub := clusterBroker(t, b, cfg)
	defer closeBroker(t, pub)
	publishAll(t, pub, topic, l, 0, n, 8, 10*time.Second)

	cons := clusterBroker(t, b, cfg)
	defer closeBroker(t, cons)
	if err := cons.Subscribe(topic, func(p []byte) error {
		id := idOf(t, p)
		l.Attempt(id)
		time.Sleep(time.Millisecond)
		l.Handled(id)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	consumeDead(t, cons, topic, l)
	all := l.Confirmed()
	if !waitFor(30*time.Second, func() bool { return len(l.Missing(all)) <= n/2 }) {
		t.Fatalf("half of %d messages not handled within 30 s", n)
	}
	t0 := time.Now()
	if err := b.Failover.Fail(topic); err != nil {
		t.Fatal(err)
	}
	ok := waitFor(60*time.Second, func() bool { return len(l.Missing(all)) == 0 })
	recovery := time.Since(t0)
	if !ok {
		recovery = -1
	}
	if err := b.Failover.Recover(); err != nil {
		t.Fatalf("recover: %v", err)
	}
	finish(t, b, b.fault("consume"), l, recovery, "")
}

// finish waits for what is left to be consumed, checks the ledger and
// reports the figures.
func finish(t *testing.T, b ClusterBackend, fault string, l *Ledger, recovery time.Duration, extra string) {
	t.Helper()
	if drained(l, 30*time.Second) < 0 && !b.MayLoseAcknowledged {
		t.Errorf("%d confirmed messages never consumed, e.g. %v", len(l.Missing(l.Confirmed())), head(l.Missing(l.Confirmed())))
	}
	messages, lost, dups := l.Tally()
	if lost != 0 && !b.MayLoseAcknowledged {
		t.Errorf("lost %d messages whose Publish returned nil", lost)
	}
	if messages == 0 {
		t.Error("no publish succeeded")
	}
	report(t, fault, b.backend(), messages, lost, dups, recovery,
		fmt.Sprintf("%s dead_letters=%d", extra, l.DeadTotal()))
}
