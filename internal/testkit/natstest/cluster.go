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

	"github.com/go-relay/relay/internal/testkit/netfault"
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

	// With [WithLinkProxies]: clients[i] is in front of node i's client
	// port, links[i][j] carries the routes node i dials to node j, and
	// refuser is what every node advertises as its route address.
	clients []*netfault.Proxy
	links   [][]*netfault.Proxy
	refuser *netfault.Proxy
	cut     []bool
	// routeEnds is the number of route connection ends of the whole mesh
	// when StartCluster returned.
	routeEnds int
}

type clusterNode struct {
	name        string
	storeDir    string
	clientPort  int
	clusterPort int
	ns          *server.Server // nil while stopped
}

// ClusterOption configures [StartCluster].
type ClusterOption func(*clusterConfig)

type clusterConfig struct {
	linkProxies bool
}

// WithLinkProxies puts every link of the cluster behind a [netfault.Proxy],
// so that [Cluster.Cut] can cut one node off from its clients and its peers
// at once, a network partition, and [Cluster.Heal] can end it:
//
//   - each node's client port is behind a proxy of its own; [Cluster.URLs]
//     returns the proxies' URLs, and each node advertises its proxy to
//     clients (the connect_urls of its INFO), so that clients that learn
//     the other nodes from the server reach them through their proxies too;
//   - the routes node i dials to node j go through a proxy of that ordered
//     pair, n*(n-1) proxies in all;
//   - every node advertises, as its route address, a port that resets every
//     connection: a node told about a peer by another one (route gossip)
//     never dials the peer's route port directly, past the proxies.
//
// [StartCluster] then also checks that every route of the cluster goes
// through a proxy. Without this option no proxy runs and the nodes dial each
// other directly.
func WithLinkProxies() ClusterOption {
	return func(c *clusterConfig) { c.linkProxies = true }
}

// StartCluster starts a cluster of n nodes (at least 3, so the meta group and
// R3 streams keep a quorum with one node down) and returns once the
// JetStream meta group has a leader with all n peers and every node follows
// it, waiting at most 30 s. NATS_URL is not used: an external server cannot
// be made into a cluster. The nodes are shut down, and their stores removed,
// in t.Cleanup, and the proxies of [WithLinkProxies] closed after them. A
// cluster that does not start fails the test.
func StartCluster(t testing.TB, n int, opts ...ClusterOption) *Cluster {
	t.Helper()
	if n < 3 {
		t.Fatalf("natstest: StartCluster needs at least 3 nodes, got %d", n)
	}
	var cfg clusterConfig
	for _, o := range opts {
		o(&cfg)
	}
	dir, err := os.MkdirTemp("", "natstest-cluster-")
	if err != nil {
		t.Fatalf("natstest: make store dir: %v", err)
	}
	c := &Cluster{tb: t, dir: dir}
	t.Cleanup(c.shutdown)
	// With link proxies the client ports are known before the first
	// start too: each node's client proxy forwards to one.
	count := n
	if cfg.linkProxies {
		count = 2 * n
	}
	ports, err := freePorts(count)
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
	if cfg.linkProxies {
		if err := c.startProxies(ports[n:]); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.waitMeta(n); err != nil {
		t.Fatal(err)
	}
	if c.links != nil {
		if err := c.waitProxiedRoutes(); err != nil {
			t.Fatal(err)
		}
		// What a whole mesh has: a later WaitReady waits for as many
		// again, so a route reset by a heal is counted only once it is
		// back, not while the other connections of its pool stand in.
		_, ends, _, err := c.routeCounts()
		if err != nil {
			t.Fatal(err)
		}
		c.routeEnds = ends
	}
	return c
}

// startProxies starts the proxies of [WithLinkProxies], the client ports
// of the nodes being clientPorts.
func (c *Cluster) startProxies(clientPorts []int) error {
	n := len(c.nodes)
	proxy := func(port int) (*netfault.Proxy, error) {
		return netfault.NewProxy(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}
	// The upstream of the refuser is never dialled.
	refuser, err := netfault.NewProxy("127.0.0.1:1")
	if err != nil {
		return err
	}
	refuser.Refuse(true)
	c.refuser = refuser
	c.cut = make([]bool, n)
	c.links = make([][]*netfault.Proxy, n)
	for i, nd := range c.nodes {
		nd.clientPort = clientPorts[i]
		p, err := proxy(nd.clientPort)
		if err != nil {
			return err
		}
		c.clients = append(c.clients, p)
		c.links[i] = make([]*netfault.Proxy, n)
		for j, other := range c.nodes {
			if j == i {
				continue
			}
			if c.links[i][j], err = proxy(other.clusterPort); err != nil {
				return err
			}
		}
	}
	return nil
}

// proxies returns every proxy of [WithLinkProxies], none without.
func (c *Cluster) proxies() []*netfault.Proxy {
	ps := append([]*netfault.Proxy(nil), c.clients...)
	for _, row := range c.links {
		for _, p := range row {
			if p != nil {
				ps = append(ps, p)
			}
		}
	}
	if c.refuser != nil {
		ps = append(ps, c.refuser)
	}
	return ps
}

// waitProxiedRoutes waits, at most 30 s, until every running node has a
// route to every other running node, as many route connections as the
// whole mesh had when the cluster started (once it has), and the route
// connections the nodes report are exactly those through the link proxies:
// each route connection is counted by the nodes at both of its ends, and
// passes through one proxy.
func (c *Cluster) waitProxiedRoutes() error {
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		meshed, ends, proxied, err := c.routeCounts()
		if err != nil {
			return err
		}
		if meshed && ends == 2*proxied && ends >= c.routeEnds {
			return nil
		}
		if time.Now().After(deadline) {
			if !meshed || ends < c.routeEnds {
				return fmt.Errorf("natstest: the running nodes have %d route connection ends after %s, %d when the cluster started (every node to every other: %v)",
					ends, clusterReadyTimeout, c.routeEnds, meshed)
			}
			return fmt.Errorf("natstest: %d route connection ends on the nodes, %d connections through the link proxies after %s: a route bypasses the proxies",
				ends, proxied, clusterReadyTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) routeCounts() (meshed bool, ends, proxied int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	running := 0
	for _, nd := range c.nodes {
		if nd.ns != nil {
			running++
		}
	}
	meshed = true
	for _, nd := range c.nodes {
		if nd.ns == nil {
			continue
		}
		rz, err := nd.ns.Routez(nil)
		if err != nil {
			return false, 0, 0, fmt.Errorf("natstest: routez of %s: %w", nd.name, err)
		}
		ends += len(rz.Routes)
		peers := make(map[string]bool)
		for _, r := range rz.Routes {
			peers[r.RemoteID] = true
		}
		meshed = meshed && len(peers) == running-1
	}
	for _, row := range c.links {
		for _, p := range row {
			if p != nil {
				proxied += p.Conns()
			}
		}
	}
	return meshed, ends, proxied, nil
}

// Cut cuts node i off from everything, as a network partition would: every
// byte between the node and its clients, and between it and every other
// node, is swallowed by the proxies, in both directions, on open and on new
// connections; nothing is closed and the node keeps running. Its clients
// notice only by their pings; the other nodes stop hearing its Raft
// heartbeats and, after the election timeout (4 to 9 s in nats-server
// v2.15.2), elect new leaders for what it led, while the node itself steps
// down from leaderships it can no longer get a quorum for (after 10 s
// without one). It needs [WithLinkProxies] (it fails the test without).
// Cutting a cut node does nothing.
func (c *Cluster) Cut(i int) { c.setCut(i, true) }

// Heal ends the [Cluster.Cut] of node i: traffic flows again, and the
// connections that lost data meanwhile are reset (their byte streams have
// holes), so clients and routes reconnect. A link between two cut nodes
// stays cut until both are healed. Healing a node that is not cut does
// nothing.
func (c *Cluster) Heal(i int) { c.setCut(i, false) }

func (c *Cluster) setCut(i int, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.links == nil {
		c.tb.Errorf("natstest: Cut and Heal need a cluster started WithLinkProxies")
		return
	}
	c.cut[i] = on
	for a, row := range c.links {
		for b, p := range row {
			if p != nil && (a == i || b == i) {
				p.BlackHole(c.cut[a] || c.cut[b])
			}
		}
	}
	c.clients[i].BlackHole(on)
}

// Dropped is the number of bytes the proxies of [WithLinkProxies] have
// swallowed during cuts so far.
func (c *Cluster) Dropped() int64 {
	var n int64
	for _, p := range c.proxies() {
		n += p.Dropped()
	}
	return n
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
		switch {
		case j == i:
		case c.links != nil:
			routes = append(routes, &url.URL{Scheme: "nats", Host: c.links[i][j].Addr()})
		default:
			routes = append(routes, &url.URL{Scheme: "nats", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(other.clusterPort))})
		}
	}
	port := nd.clientPort
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: nd.name,
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   nd.storeDir,
		Cluster:    server.ClusterOpts{Name: "relay-test", Host: "127.0.0.1", Port: nd.clusterPort},
		Routes:     routes,
		NoLog:      true,
		NoSigs:     true,
	}
	if c.links != nil {
		opts.ClientAdvertise = c.clients[i].Addr()
		opts.Cluster.Advertise = c.refuser.Addr()
	}
	ns, err := server.NewServer(opts)
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
// order, stopped ones included: with [WithLinkProxies], the URL of the
// node's client proxy. The URLs stay the same across restarts.
func (c *Cluster) URLs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	urls := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		urls[i] = "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(nd.clientPort))
		if c.clients != nil {
			urls[i] = "nats://" + c.clients[i].Addr()
		}
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

// StreamLeaders returns the indexes of the running nodes that consider
// themselves the leader of stream in [DefaultAccount], in node order. During
// a [Cluster.Cut] of the leader there may be two: the cut node, until it
// steps down, and the one the others elected.
func (c *Cluster) StreamLeaders(stream string) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var leaders []int
	for i, nd := range c.nodes {
		if nd.ns != nil && nd.ns.JetStreamIsStreamLeader(DefaultAccount, stream) {
			leaders = append(leaders, i)
		}
	}
	return leaders
}

// WaitReady waits, at most 30 s, until the JetStream meta group has a
// leader with every node as a peer and every running node follows it, as
// [StartCluster] does before it returns, and, with [WithLinkProxies], every
// running node has routes to every other one again, as many as when the
// cluster started, all through the proxies: after a [Cluster.Heal], it
// returns once the node has rejoined (which does not say that every stream
// it led has one leader again: [Cluster.WaitStreamReady]). Every node must
// be running.
func (c *Cluster) WaitReady() error {
	if err := c.waitMeta(len(c.nodes)); err != nil {
		return err
	}
	if c.links != nil {
		return c.waitProxiedRoutes()
	}
	return nil
}

// WaitStreamReady waits, at most timeout, until exactly one running node
// leads stream in [DefaultAccount] and the replica of every running node is
// current (it follows the leader, and is not catching up): after a
// [Cluster.Heal], once the node's replica of the stream has rejoined.
func (c *Cluster) WaitStreamReady(stream string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		leaders, current := c.streamState(stream)
		if len(leaders) == 1 && current {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natstest: stream %q after %s: led by %v, every replica current: %v; want one leader, all current",
				stream, timeout, leaders, current)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *Cluster) streamState(stream string) (leaders []int, current bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	current = true
	for i, nd := range c.nodes {
		if nd.ns == nil {
			continue
		}
		if nd.ns.JetStreamIsStreamLeader(DefaultAccount, stream) {
			leaders = append(leaders, i)
		}
		current = current && nd.ns.JetStreamIsStreamCurrent(DefaultAccount, stream)
	}
	return leaders, current
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

// shutdown stops every node, closes the proxies and removes the stores.
func (c *Cluster) shutdown() {
	for i := range c.nodes {
		c.StopNode(i)
	}
	for _, p := range c.proxies() {
		p.Close()
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
