package natsjs_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/faulttest"
	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
	"github.com/go-relay/relay/pubsubtest"
)

// The failover cases of internal/testkit/faulttest on a 3-node cluster with R3
// streams and consumers: the stream leader is shut down during publish,
// consume, dead-letter writes, the redelivery of a dead consumer's messages
// and Close, and started again; one node is black-holed behind a proxy
// from its clients only, and one (the leader, or a follower) is cut off
// from its clients and its peers, a partition.
// RELAY_FAULTS=full runs the full counts.

// leaderLoss takes down the leader of a topic's stream.
type leaderLoss struct {
	c    *natstest.Cluster
	down int
}

func (f *leaderLoss) Fail(topic string) error {
	i := f.c.WaitStreamLeader(natsjs.StreamName(topic), 10*time.Second)
	if i < 0 {
		return fmt.Errorf("no leader of stream %q", natsjs.StreamName(topic))
	}
	f.c.StopNode(i)
	f.down = i
	return nil
}

func (f *leaderLoss) Recover() error { return f.c.StartNode(f.down) }

// clusterFaultBroker is a broker of cfg with R3 streams and consumers on nc.
func clusterFaultBroker(t testing.TB, nc *nats.Conn, cfg pubsubtest.Config) (relay.Broker, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return natsjs.NewBroker(js, append([]natsjs.Option{
		natsjs.WithGroup(cfg.Group),
		natsjs.WithMaxDeliver(cfg.MaxDeliver),
		natsjs.WithBackoff(cfg.MinBackoff, cfg.MaxBackoff),
		natsjs.WithConcurrency(cfg.Concurrency),
		natsjs.WithAckWait(cfg.AckWait),
		natsjs.WithLogger(faulttest.Logger()),
	}, replicated()...)...)
}

// clusterConnect connects to urls (comma-separated) as
// natstest.ConnectCluster does, with extra options; closed in t.Cleanup.
func clusterConnect(t testing.TB, urls string, extra ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(urls, append([]nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
	}, extra...)...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	return nc, nil
}

// clusterHelperBroker is the broker of the claim case's child process: addr
// is every node's URL, comma-separated.
func clusterHelperBroker(t testing.TB, addr string, cfg pubsubtest.Config) (relay.Broker, error) {
	nc, err := clusterConnect(t, addr)
	if err != nil {
		return nil, err
	}
	return clusterFaultBroker(t, nc, cfg)
}

func TestClusterFaultHelperProcess(t *testing.T) { faulttest.HelperProcess(t, clusterHelperBroker) }

func clusterFaultBackend(t *testing.T) faulttest.ClusterBackend {
	c := natstest.StartCluster(t, 3)
	urls := c.URLs()
	return faulttest.ClusterBackend{
		Name:     "natsjs-cluster",
		Failover: &leaderLoss{c: c},
		NewBroker: func(t testing.TB, cfg pubsubtest.Config) (relay.Broker, error) {
			return clusterFaultBroker(t, natstest.ConnectCluster(t, c), cfg)
		},
		HelperTest: "TestClusterFaultHelperProcess",
		HelperAddr: strings.Join(urls, ","),
		// The node the clients connect to first: a NATS client talks to
		// one node and reconnects to another when it goes silent.
		CutNode: func(string) (string, error) { return strings.TrimPrefix(urls[0], "nats://"), nil },
		NewBrokerVia: func(t testing.TB, cfg pubsubtest.Config, node, via string) (relay.Broker, error) {
			list := []string{"nats://" + via}
			for _, u := range urls {
				if u != "nats://"+node {
					list = append(list, u)
				}
			}
			// A silent server is noticed after two missed pings, 1 to
			// 1.5 s, rather than nats.go's default of 2 minutes each.
			nc, err := clusterConnect(t, strings.Join(list, ","), nats.DontRandomize(),
				nats.PingInterval(500*time.Millisecond), nats.MaxPingsOutstanding(2))
			if err != nil {
				return nil, err
			}
			return clusterFaultBroker(t, nc, cfg)
		},
		// Once the handlers returned, Close waits at most finishWait (1 s)
		// for the pull request in progress and flushTimeout (2 s) for the
		// acks (natsjs/engine.go).
		CloseBound: 3 * time.Second,
		// The embedded servers start goroutines when they take over a
		// stream's or consumer's leadership: through startGoRoutine, or, a
		// new consumer leader's loops, directly.
		LeakIgnore: serverGoroutines(),
	}
}

// partition cuts a node of a cluster started WithLinkProxies off from its
// clients and its peers; nodes are named as natstest names them, "n0", ...
// A node cut off, or healed a moment ago, may still believe it leads a
// stream the others gave to another node (until it steps down, after 10 s
// without a quorum, or hears the new leader's term): when two nodes claim a
// stream, the one not cut last is its leader.
type partition struct {
	c *natstest.Cluster

	mu    sync.Mutex
	stale int // the node cut last, -1 before the first cut
}

func nodeName(i int) string { return "n" + strconv.Itoa(i) }

func nodeIndex(node string) int {
	i, err := strconv.Atoi(strings.TrimPrefix(node, "n"))
	if err != nil {
		panic(fmt.Sprintf("not a node name: %q", node))
	}
	return i
}

func (p *partition) Node(topic string, leader bool) (string, error) {
	stream := natsjs.StreamName(topic)
	i := p.c.WaitStreamLeader(stream, 10*time.Second)
	if i < 0 {
		return "", fmt.Errorf("no leader of stream %q", stream)
	}
	if !leader {
		i = (i + 1) % p.c.Size()
	}
	return nodeName(i), nil
}

func (p *partition) Leader(topic, except string) string {
	var claims []int
	for _, i := range p.c.StreamLeaders(natsjs.StreamName(topic)) {
		if nodeName(i) != except {
			claims = append(claims, i)
		}
	}
	p.mu.Lock()
	stale := p.stale
	p.mu.Unlock()
	for _, i := range claims {
		if len(claims) == 1 || i != stale {
			return nodeName(i)
		}
	}
	return ""
}

func (p *partition) Cut(node string) {
	p.mu.Lock()
	p.stale = nodeIndex(node)
	p.mu.Unlock()
	p.c.Cut(nodeIndex(node))
}

func (p *partition) Heal(node string) { p.c.Heal(nodeIndex(node)) }

// Rejoined waits until the meta group is whole again, every route through
// the proxies, and the topic's stream has one leader and every replica
// current, at most 60 s in all.
func (p *partition) Rejoined(topic, node string) error {
	start := time.Now()
	if err := p.c.WaitReady(); err != nil {
		return err
	}
	return p.c.WaitStreamReady(natsjs.StreamName(topic), 60*time.Second-time.Since(start))
}

func (p *partition) Dropped() int64 { return p.c.Dropped() }

// clusterPartitionBackend is clusterFaultBackend on a cluster whose client
// ports and routes all go through proxies, so that one node can be cut off
// from its clients and its peers.
func clusterPartitionBackend(t *testing.T) faulttest.ClusterBackend {
	c := natstest.StartCluster(t, 3, natstest.WithLinkProxies())
	urls := c.URLs()
	return faulttest.ClusterBackend{
		Name: "natsjs-cluster",
		NewBroker: func(t testing.TB, cfg pubsubtest.Config) (relay.Broker, error) {
			return clusterFaultBroker(t, natstest.ConnectCluster(t, c), cfg)
		},
		Partition: &partition{c: c, stale: -1},
		NewBrokerAt: func(t testing.TB, cfg pubsubtest.Config, node string) (relay.Broker, error) {
			i := nodeIndex(node)
			list := append([]string{urls[i]}, append(append([]string(nil), urls[:i]...), urls[i+1:]...)...)
			// A silent server is noticed after two missed pings, 1 to
			// 1.5 s, rather than nats.go's default of 2 minutes each.
			nc, err := clusterConnect(t, strings.Join(list, ","), nats.DontRandomize(),
				nats.PingInterval(500*time.Millisecond), nats.MaxPingsOutstanding(2))
			if err != nil {
				return nil, err
			}
			return clusterFaultBroker(t, nc, cfg)
		},
	}
}

func TestClusterFailoverDuringPublish(t *testing.T) {
	faulttest.RunFailoverDuringPublish(t, clusterFaultBackend(t))
}

func TestClusterFailoverDuringConsume(t *testing.T) {
	faulttest.RunFailoverDuringConsume(t, clusterFaultBackend(t))
}

func TestClusterFailoverDuringDeadLetter(t *testing.T) {
	faulttest.RunFailoverDuringDeadLetter(t, clusterFaultBackend(t))
}

func TestClusterFailoverOfDeadLetterTopic(t *testing.T) {
	faulttest.RunFailoverOfDeadLetterTopic(t, clusterFaultBackend(t))
}

func TestClusterFailoverDuringClaim(t *testing.T) {
	faulttest.RunFailoverDuringClaim(t, clusterFaultBackend(t))
}

func TestClusterNetworkCut(t *testing.T) {
	faulttest.RunClusterNetworkCut(t, clusterFaultBackend(t))
}

func TestClusterPartitionOfLeader(t *testing.T) {
	faulttest.RunClusterPartitionOfLeader(t, clusterPartitionBackend(t))
}

func TestClusterPartitionOfFollower(t *testing.T) {
	faulttest.RunClusterPartitionOfFollower(t, clusterPartitionBackend(t))
}

func TestClusterCloseDuringFailover(t *testing.T) {
	faulttest.RunCloseDuringFailover(t, clusterFaultBackend(t))
}

// serverGoroutines are goleak options that ignore the goroutines an
// embedded nats-server v2.15.2 starts while it runs, seen when a failover
// makes a node take a leadership over.
func serverGoroutines() []goleak.Option {
	var opts []goleak.Option
	for _, f := range []string{
		"(*Server).startGoRoutine.func1",
		"(*consumer).loopAndGatherMsgs",
		"(*consumer).processInboundAcks",
		"(*consumer).processInboundNextMsgReqs",
		"(*consumer).loopAndForwardProposals",
		"(*stream).internalLoop",
		"(*stream).signalConsumersLoop",
	} {
		opts = append(opts, goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server."+f))
	}
	return opts
}
