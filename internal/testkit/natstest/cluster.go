package natstest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// clusterReadyTimeout bounds how long [StartCluster] and [Cluster.StartNode]
// wait for the JetStream meta group to have a leader that every running node
// follows. The Raft election timeout of nats-server v2.15.2 is 4 to 9 s, so
// an election that has to be repeated once still fits.
const clusterReadyTimeout = 30 * time.Second

// DefaultAccount is the account of clients without credentials on an
// embedded server, the account [Cluster.StreamLeader] looks in.
const DefaultAccount = "$G"

// Cluster is a JetStream cluster of embedded nats-server v2.15.2 nodes in the
// test process, made by [StartCluster]. Every node listens on 127.0.0.1 only,
// on a client port picked free at its first start and a cluster (route) port
// picked free by [StartCluster], both kept for later starts, has its own store directory and a server name
// ("n0", "n1", ...). Its methods are safe for concurrent use.
type Cluster struct {
	tb    testing.TB
	mu    sync.Mutex
	dir   string
	nodes []*clusterNode
}

type clusterNode struct {
	name        string
	storeDir    string
	clientPort  int
	clusterPort int
	ns          *server.Server // nil while stopped
}

// StartCluster starts a cluster of n nodes (at least 3, so the meta group and
// R3 streams keep a quorum with one node down) and returns once the
// JetStream meta group has a leader with all n peers and every node follows
// it, waiting at most 30 s. NATS_URL is not used: an external server cannot
// be made into a cluster. The nodes are shut down, and their stores removed,
// in t.Cleanup. A cluster that does not start fails the test.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 3 {
		t.Fatalf("natstest: StartCluster needs at least 3 nodes, got %d", n)
	}
	dir, err := os.MkdirTemp("", "natstest-cluster-")
	if err != nil {
		t.Fatalf("natstest: make store dir: %v", err)
	}
	c := &Cluster{tb: t, dir: dir}
	t.Cleanup(c.shutdown)
	ports, err := freePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		c.nodes = append(c.nodes, &clusterNode{
			name:        "n" + strconv.Itoa(i),
			storeDir:    filepath.Join(dir, "n"+strconv.Itoa(i)),
			clusterPort: ports[i],
		})
	}
	for i := range n {
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.waitMeta(n); err != nil {
		t.Fatal(err)
	}
	return c
}

// freePorts returns n ports free on 127.0.0.1 a moment ago. The route ports
// must be known before the first node starts, since nats-server v2.15.2
// refuses clustered JetStream without configured routes; the kernel does not
// hand a port it just released to the next listen on port 0, so the window
// for another process to take one is small.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("natstest: find a free port: %w", err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// start starts node i with routes to every other node.
func (c *Cluster) start(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	nd := c.nodes[i]
	if nd.ns != nil {
		return nil
	}
	var routes []*url.URL
	for j, other := range c.nodes {
		if j != i {
			routes = append(routes, &url.URL{Scheme: "nats", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(other.clusterPort))})
		}
	}
	port := nd.clientPort
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: nd.name,
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   nd.storeDir,
		Cluster:    server.ClusterOpts{Name: "relay-test", Host: "127.0.0.1", Port: nd.clusterPort},
		Routes:     routes,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		return fmt.Errorf("natstest: new cluster node %s: %w", nd.name, err)
	}
	fatal := &fatalLogger{}
	ns.SetLogger(fatal, false, false)
	go ns.Start()
	if err := waitReady(ns, fatal, true); err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return fmt.Errorf("natstest: cluster node %s: %w", nd.name, err)
	}
	nd.ns = ns
	nd.clientPort = ns.Addr().(*net.TCPAddr).Port
	return nil
}

// waitMeta waits until a running node leads the meta group with peers peers
// and every running node follows it.
func (c *Cluster) waitMeta(peers int) error {
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		if c.metaReady(peers) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natstest: no JetStream meta leader with %d peers followed by every node after %s", peers, clusterReadyTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) metaReady(peers int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	leader := false
	for _, nd := range c.nodes {
		if nd.ns == nil {
			continue
		}
		if nd.ns.JetStreamIsLeader() {
			leader = len(nd.ns.JetStreamClusterPeers()) >= peers
		}
		if !nd.ns.JetStreamIsCurrent() {
			return false
		}
	}
	return leader
}

// Size is the number of nodes, running or not.
func (c *Cluster) Size() int { return len(c.nodes) }

// URLs returns the client URL of every node, "nats://127.0.0.1:port", in node
// order, stopped ones included. The URLs stay the same across restarts.
func (c *Cluster) URLs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	urls := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		urls[i] = "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(nd.clientPort))
	}
	return urls
}

// StopNode shuts node i down, waiting until it has, and keeps its ports and
// store for [Cluster.StartNode]. Its clients reconnect to another node; the
// streams and consumers it led elect a new leader among the others (after
// the Raft election timeout, 4 to 9 s in nats-server v2.15.2, unless the node
// handed leadership over while shutting down). Stopping a stopped node does
// nothing.
func (c *Cluster) StopNode(i int) {
	c.mu.Lock()
	nd := c.nodes[i]
	ns := nd.ns
	nd.ns = nil
	c.mu.Unlock()
	if ns != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
	}
}

// StartNode starts node i again, stopped by [Cluster.StopNode], on the same
// ports with the same store, and returns once it follows the meta leader
// again (waiting at most 30 s). On a running node it does nothing.
func (c *Cluster) StartNode(i int) error {
	if err := c.start(i); err != nil {
		return err
	}
	return c.waitMeta(len(c.nodes))
}

// StreamLeader returns the index of the running node that leads stream
// (a stream name, see natsjs.StreamName) in [DefaultAccount], or -1 when no
// running node does (the stream does not exist, or an election is under way).
func (c *Cluster) StreamLeader(stream string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, nd := range c.nodes {
		if nd.ns != nil && nd.ns.JetStreamIsStreamLeader(DefaultAccount, stream) {
			return i
		}
	}
	return -1
}

// WaitStreamLeader waits until a running node leads stream, at most timeout,
// and returns its index, or -1 after timeout.
func (c *Cluster) WaitStreamLeader(stream string, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		if i := c.StreamLeader(stream); i >= 0 {
			return i
		}
		if time.Now().After(deadline) {
			return -1
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// shutdown stops every node and removes the stores.
func (c *Cluster) shutdown() {
	for i := range c.nodes {
		c.StopNode(i)
	}
	os.RemoveAll(c.dir)
}

// ConnectCluster returns a client of c that knows every node's URL, retries
// its first connection and reconnects forever, every 100 ms, to whichever
// node is up. It is closed in t.Cleanup.
func ConnectCluster(t testing.TB, c *Cluster) *nats.Conn {
	t.Helper()
	urls := strings.Join(c.URLs(), ",")
	nc, err := nats.Connect(urls,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond),
		nats.RetryOnFailedConnect(true),
	)
	if err != nil {
		t.Fatalf("natstest: connect %s: %v", urls, err)
	}
	t.Cleanup(nc.Close)
	return nc
}
