package natsjs_test

import (
	"fmt"
	"strings"
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
// and Close, and started again; one node is black-holed behind a proxy.
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
