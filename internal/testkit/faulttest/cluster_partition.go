package faulttest

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/pubsubtest"
)

// Partition cuts one node of a cluster off from everything, clients and
// peers alike, as a network partition would: the node keeps running, but
// every byte to and from it is lost, nothing is closed.
type Partition interface {
	// Node returns the name of the node to cut for topic, whose stream
	// exists: with leader, the one that leads it (takes its writes);
	// without, one that does not.
	Node(topic string, leader bool) (string, error)
	// Leader returns the node that leads topic's stream as the nodes
	// other than except (none when "") see it, or "" when none of them
	// does: during a cut, the leader on the majority's side.
	Leader(topic, except string) string
	// Cut cuts node off; Heal ends the cut.
	Cut(node string)
	Heal(node string)
	// Rejoined waits, bounded, until node is a member of the cluster again
	// after Heal, and topic's stream has one leader (a node cut off may
	// believe it still leads until it hears of the one elected meanwhile).
	Rejoined(topic, node string) error
	// Dropped is the number of bytes the cuts have swallowed so far.
	Dropped() int64
}

// partitionElectionWait bounds how long a cut of a leader lasts while the
// other nodes have not elected a new one: the Raft election timeout of
// nats-server v2.15.2 is 4 to 9 s, and an election may have to be repeated.
const partitionElectionWait = 25 * time.Second

// RunClusterPartitionOfLeader cuts the node that leads the topic's stream
// off from its clients and its peers for 10 s, longer than the election
// timeout (and, if the others have not elected a new leader by then, until
// they have, at most 25 s), while 2 publishers publish and a consumer
// consumes, both on clients that connect to that node first, then heals the
// cut. The other nodes must elect a new leader during the cut (else the cut
// was no partition), nothing whose Publish returned nil may be lost, and
// publishing must work again. It reports the publish errors, the publish
// outage (from the cut until a Publish started after it returned nil), the
// election (from the cut until another node led the stream), the leaders
// before and after, and the recovery: from the heal until every message
// whose Publish had started by then was published (or failed) and, if
// confirmed, consumed.
//
// Budget: 2 publishers at most ~100 messages/s each, publish timeout 2 s,
// ack wait 1 s; recovery within 60 s; the healed node rejoins within the
// bound of Partition.Rejoined (natsjs: 60 s). The case takes about 20 s.
// It skips without b.Partition and b.NewBrokerAt.
func RunClusterPartitionOfLeader(t *testing.T, b ClusterBackend) {
	runClusterPartition(t, b, true)
}

// RunClusterPartitionOfFollower is [RunClusterPartitionOfLeader] with a
// node that does not lead the topic's stream cut off (the clients still
// connect to it first): the leader keeps its quorum, so no election is
// needed and the publish outage is the clients' reconnection to another
// node. Whether the leader changed is reported.
func RunClusterPartitionOfFollower(t *testing.T, b ClusterBackend) {
	runClusterPartition(t, b, false)
}

func runClusterPartition(t *testing.T, b ClusterBackend, ofLeader bool) {
	if b.Partition == nil || b.NewBrokerAt == nil {
		t.Skip("faulttest: the partition cases need Partition and NewBrokerAt")
	}
	const length = 10 * time.Second
	fault := "partition-follower"
	if ofLeader {
		fault = "partition-leader"
	}
	topic, group := names(t, b.backend())
	cfg := pubsubtest.Config{Group: group, MaxDeliver: 50, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Concurrency: 8, AckWait: time.Second}

	// The stream and the group exist before the node is chosen.
	warm := clusterBroker(t, b, cfg)
	if err := warm.Subscribe(topic, func([]byte) error { return fmt.Errorf("warm-up broker got a message") }); err != nil {
		t.Fatal(err)
	}
	closeBroker(t, warm)
	node, err := b.Partition.Node(topic, ofLeader)
	if err != nil {
		t.Fatal(err)
	}
	at := func() relay.Broker {
		br, err := b.NewBrokerAt(t, cfg, node)
		if err != nil {
			t.Fatalf("faulttest: new %s broker at %s: %v", b.Name, node, err)
		}
		return br
	}
	l := NewLedger()
	ld, stop := steadyLoad(t, at, topic, l, "the cut")
	defer stop()
	before := b.Partition.Leader(topic, "")

	t0 := time.Now()
	b.Partition.Cut(node)
	healed := false
	heal := func() {
		if !healed {
			healed = true
			b.Partition.Heal(node)
		}
	}
	defer heal()
	back := firstConfirmedAfter(l, int(ld.next.Load()), t0)
	election := time.Duration(-1)
	var during string
	waitFor(length, func() bool {
		if during == "" {
			if during = b.Partition.Leader(topic, node); during != "" {
				election = time.Since(t0)
			}
		}
		return false
	})
	if ofLeader && during == "" {
		if waitFor(partitionElectionWait-length, func() bool { return b.Partition.Leader(topic, node) != "" }) {
			election = time.Since(t0)
			during = b.Partition.Leader(topic, node)
		} else {
			t.Errorf("no node but the cut %s led the stream %s into the cut: the cut did not partition the cluster", node, partitionElectionWait)
		}
	}
	cutFor := time.Since(t0)
	heal()
	healedAt := time.Now()
	watch := watchLeader(b.Partition, topic)

	recovery := ld.caughtUp(l, 60*time.Second)
	if recovery < 0 {
		t.Errorf("consumption did not resume: %d confirmed messages not consumed 60 s after the heal, e.g. %v",
			len(l.Missing(l.Confirmed())), head(l.Missing(l.Confirmed())))
	}
	outage := <-back
	if outage < 0 {
		t.Errorf("no Publish started after the cut succeeded within 60 s of it")
	}
	rejoin := time.Duration(-1)
	if err := b.Partition.Rejoined(topic, node); err != nil {
		t.Errorf("%s after the heal: %v", node, err)
	} else {
		rejoin = time.Since(healedAt)
	}
	// The load goes on a while after the rejoin: a node back from a cut may
	// disrupt the leader (a higher Raft term from the elections it held
	// alone), and that shows as publish errors and a leaderless time.
	time.Sleep(3 * time.Second)
	ld.halt()
	if drained(l, 60*time.Second) < 0 {
		t.Errorf("%d confirmed messages never consumed, e.g. %v", len(l.Missing(l.Confirmed())), head(l.Missing(l.Confirmed())))
	}
	changes, leaderless := watch.stop()
	after := ""
	waitFor(10*time.Second, func() bool { after = b.Partition.Leader(topic, ""); return after != "" })
	messages, lost, dups := l.Tally()
	if lost != 0 {
		t.Errorf("lost %d messages whose Publish returned nil", lost)
	}
	if messages == 0 {
		t.Error("no publish succeeded")
	}
	electionText := "-"
	if during != before {
		electionText = durOrDash(election)
	}
	report(t, fault, b.backend(), messages, lost, dups, recovery,
		fmt.Sprintf("cut=%s cut_length=%s publish_errors=%d publish_outage=%s election=%s leader_before=%s leader_during=%s "+
			"leader_after=%s leader_changes_after_heal=%d leaderless_after_heal=%s rejoin=%s dropped_bytes=%d",
			node, cutFor.Round(time.Millisecond), l.Failed(), outage.Round(time.Millisecond), electionText,
			orDash(before), orDash(during), orDash(after), changes, leaderless.Round(time.Millisecond), durOrDash(rejoin),
			b.Partition.Dropped()))
}

// leaderWatch samples the leader of a topic's stream every 20 ms, from
// [watchLeader] until [leaderWatch.stop].
type leaderWatch struct {
	done   chan struct{}
	result chan leaderChanges
}

type leaderChanges struct {
	changes    int           // to another node, or to none
	leaderless time.Duration // in all
}

// watchLeader samples the leader of topic's stream until stop, which
// returns how often it changed and how long no node led it: a healed node
// may disrupt the leader of the group it rejoins.
func watchLeader(p Partition, topic string) *leaderWatch {
	w := &leaderWatch{done: make(chan struct{}), result: make(chan leaderChanges, 1)}
	go func() {
		var r leaderChanges
		last, since := p.Leader(topic, ""), time.Now()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				if last == "" {
					r.leaderless += time.Since(since)
				}
				w.result <- r
				return
			case <-tick.C:
			}
			if now := p.Leader(topic, ""); now != last {
				r.changes++
				if last == "" {
					r.leaderless += time.Since(since)
				}
				last, since = now, time.Now()
			}
		}
	}()
	return w
}

func (w *leaderWatch) stop() (changes int, leaderless time.Duration) {
	close(w.done)
	r := <-w.result
	return r.changes, r.leaderless
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func durOrDash(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return d.Round(time.Millisecond).String()
}
