package faulttest

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/pubsubtest"
)

// RunClusterNetworkCut puts one node of the cluster (b.CutNode) behind a
// [Proxy], through which the clients (a publisher and a consumer) reach it,
// and black-holes it for 3 s (full: 10 s) while messages are published and
// consumed: every byte to and from that node is swallowed, nothing is closed,
// and the node itself stays in the cluster (its cluster links do not go
// through the proxy). Then the path is restored. Nothing confirmed may be
// lost, even where the server replicates asynchronously, since no node
// fails; publishing must work again. It reports the publish outage (from the
// cut until a Publish started after it returned nil: NATS clients reconnect
// to another node meanwhile, Redis clients wait for the path back) and the
// recovery: the time from the restore until every message whose Publish had
// started by then was published (or failed) and, if confirmed, consumed.
//
// Budget: 2 publishers at most ~100 messages/s each, publish timeout 2 s,
// ack wait 1 s; everything consumed within 60 s of the restore. It skips
// without b.CutNode and b.NewBrokerVia.
func RunClusterNetworkCut(t *testing.T, b ClusterBackend) {
	if b.CutNode == nil || b.NewBrokerVia == nil {
		t.Skip("faulttest: the cluster network cut needs CutNode and NewBrokerVia")
	}
	length := pick(3*time.Second, 10*time.Second)
	topic, group := names(t, b.backend())
	node, err := b.CutNode(topic)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewProxy(node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() }) // after the clients' cleanups: registered first
	cfg := pubsubtest.Config{Group: group, MaxDeliver: 50, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Concurrency: 8, AckWait: time.Second}
	via := func() relay.Broker {
		br, err := b.NewBrokerVia(t, cfg, node, p.Addr())
		if err != nil {
			t.Fatalf("faulttest: new %s broker through the proxy: %v", b.Name, err)
		}
		return br
	}
	l := NewLedger()
	ld, stop := steadyLoad(t, via, topic, l, "the cut")
	defer stop()
	if p.Conns() == 0 {
		t.Fatalf("no client connection goes through the proxy in front of %s", node)
	}

	t0 := time.Now()
	p.BlackHole(true)
	back := firstConfirmedAfter(l, int(ld.next.Load()), t0)
	time.Sleep(length)
	p.BlackHole(false)

	recovery := ld.caughtUp(l, 60*time.Second)
	if recovery < 0 {
		t.Errorf("consumption did not resume: %d confirmed messages not consumed 60 s after the restore, e.g. %v",
			len(l.Missing(l.Confirmed())), head(l.Missing(l.Confirmed())))
	}
	outage := <-back
	if outage < 0 {
		t.Errorf("no Publish started after the cut succeeded within 60 s of it")
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
	report(t, "network-cut-node", b.backend(), messages, lost, dups, recovery,
		fmt.Sprintf("fault_length=%s publish_errors=%d publish_outage=%s dropped_bytes=%d",
			length, l.Failed(), outage.Round(time.Millisecond), p.Dropped()))
}
