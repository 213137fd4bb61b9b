package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

const (
	// clusterNodes is the size of a cluster from [StartCluster]: three
	// masters with one replica each, the smallest Redis Cluster that
	// survives the loss of a master.
	clusterNodes = 6
	// ClusterNodeTimeout is the --cluster-node-timeout of the nodes: how
	// long a master may be unreachable before the others flag it as failed
	// and its replica starts an election. Redis' default is 15 s; the tests
	// use 1 s so that a failover takes a few seconds.
	ClusterNodeTimeout = time.Second
	// clusterReadyTimeout bounds every wait for the cluster's state.
	clusterReadyTimeout = 30 * time.Second
)

// ClusterConfig describes a cluster from [StartCluster]. The zero value is a
// cluster without persistence.
type ClusterConfig struct {
	// AppendOnly gives every node an append-only file with an fsync per
	// write, as [Config.AppendOnly].
	AppendOnly bool
}

// Cluster is a Redis Cluster of six redis-server 7 child processes on
// 127.0.0.1, three masters and three replicas, made by [StartCluster]. Each
// node has a directory of its own (its nodes.conf, log and append-only
// file), a client port picked free with its cluster bus port (the client
// port + 10000) free too, --cluster-node-timeout [ClusterNodeTimeout] and
// --repl-diskless-sync-delay 0.
// Its methods are safe for concurrent use; the node indexes are those of
// [Cluster.Addrs].
type Cluster struct {
	tb    testing.TB
	dir   string
	nodes []*Server
}

// StartCluster starts six nodes, makes a cluster of them with
//
//	redis-cli --cluster create <addrs> --cluster-replicas 1 --cluster-yes
//
// and returns once every node says cluster_state:ok and every master has a
// replica whose link to it is up (waiting at most 30 s). The nodes are
// killed, and their directories removed, in t.Cleanup. REDIS_URL is not
// used: a cluster is always started here. Without redis-server or redis-cli
// on PATH it skips the test (fails it under CI=true); a cluster that does not
// come up fails the test.
func StartCluster(t testing.TB, cfg ...ClusterConfig) *Cluster {
	t.Helper()
	var c0 ClusterConfig
	if len(cfg) > 1 {
		t.Fatal("redistest: StartCluster takes at most one ClusterConfig")
	} else if len(cfg) == 1 {
		c0 = cfg[0]
	}
	bin, err := exec.LookPath("redis-server")
	cli, cliErr := exec.LookPath("redis-cli")
	if err != nil || cliErr != nil {
		msg := "redistest: a Redis Cluster needs redis-server and redis-cli on PATH (apt-get install redis-server)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		skip(t, &clusterSkips, msg)
	}
	dir, err := os.MkdirTemp("", "redistest-cluster-")
	if err != nil {
		t.Fatalf("redistest: make dir: %v", err)
	}
	c := &Cluster{tb: t, dir: dir}
	t.Cleanup(c.shutdown)
	args := []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout / time.Millisecond)),
		// A replica's full sync starts at once rather than after Redis 7's
		// default 5 s wait for more replicas to share the transfer.
		"--repl-diskless-sync-delay", "0"}
	for i := range clusterNodes {
		port, err := freeClusterPort()
		if err != nil {
			t.Fatal(err)
		}
		ndir := filepath.Join(dir, "n"+strconv.Itoa(i))
		if err := os.Mkdir(ndir, 0o755); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s := &Server{bin: bin, cfg: Config{Dir: ndir, Port: port, AppendOnly: c0.AppendOnly}, extra: args, prefix: newPrefix(t.Name())}
		c.nodes = append(c.nodes, s)
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()
	create := append([]string{"--cluster", "create"}, c.Addrs()...)
	create = append(create, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, create...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, lastLines(out, 10))
	}
	if err := c.waitHealthy(); err != nil {
		t.Fatal(err)
	}
	return c
}

// freeClusterPort returns a free port whose cluster bus port, 10000 above
// it, is free too.
func freeClusterPort() (int, error) {
	for range 50 {
		p, err := freePort()
		if err != nil {
			return 0, err
		}
		if p+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+10000)))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("redistest: no free port with a free cluster bus port")
}

func (c *Cluster) shutdown() {
	for _, s := range c.nodes {
		s.Shutdown()
	}
	os.RemoveAll(c.dir)
}

// Addrs returns every node's "127.0.0.1:port", running or not, in node
// order.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Node returns node i, to pause or resume it ([Server.Pause]). Stop it only
// through [Cluster.KillMaster] and start it through [Cluster.StartNode], so
// that the cluster's waits apply.
func (c *Cluster) Node(i int) *Server { return c.nodes[i] }

// Client returns a cluster client of every node, closed in t.Cleanup.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { rc.Close() })
	return rc
}

// running returns the indexes of the nodes whose process runs.
func (c *Cluster) running() []int {
	var out []int
	for i, s := range c.nodes {
		s.mu.Lock()
		up := s.cmd != nil
		s.mu.Unlock()
		if up {
			out = append(out, i)
		}
	}
	return out
}

// do runs one command on node i on a connection of its own, closed after.
func (c *Cluster) do(i int, args ...any) (any, error) {
	rc := redis.NewClient(&redis.Options{
		Addr: c.nodes[i].Addr(), DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		MaxRetries: -1, PoolSize: 1, MaxActiveConns: 1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return rc.Do(ctx, args...).Result()
}

func (c *Cluster) text(i int, args ...any) (string, error) {
	v, err := c.do(i, args...)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("redistest: %v answered %T", args, v)
	}
	return s, nil
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, addr, master string
	flags            map[string]bool
	slots            []string
}

func parseNodes(out string) []clusterNode {
	var nodes []clusterNode
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := clusterNode{id: f[0], addr: f[1], master: f[3], flags: map[string]bool{}, slots: f[8:]}
		if at := strings.IndexByte(n.addr, '@'); at >= 0 {
			n.addr = n.addr[:at]
		}
		for fl := range strings.SplitSeq(f[2], ",") {
			n.flags[fl] = true
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// healthy reports why the cluster is not healthy yet, or "" when every
// running node says cluster_state:ok, every master that serves slots has a
// replica no node flags as failing, and every replica's link to its master is
// up.
func (c *Cluster) healthy() string {
	for _, i := range c.running() {
		info, err := c.text(i, "CLUSTER", "INFO")
		if err != nil {
			return err.Error()
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Sprintf("node %d: cluster_state not ok", i)
		}
		repl, err := c.text(i, "INFO", "replication")
		if err != nil {
			return err.Error()
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Sprintf("node %d: replica link not up", i)
		}
		out, err := c.text(i, "CLUSTER", "NODES")
		if err != nil {
			return err.Error()
		}
		nodes := parseNodes(out)
		for _, m := range nodes {
			if m.flags["fail"] || m.flags["fail?"] {
				return fmt.Sprintf("node %d sees %s failing", i, m.addr)
			}
			if !m.flags["master"] || len(m.slots) == 0 {
				continue
			}
			replicas := 0
			for _, r := range nodes {
				if r.master == m.id && r.flags["slave"] {
					replicas++
				}
			}
			if replicas == 0 {
				return fmt.Sprintf("node %d: master %s has no replica", i, m.addr)
			}
		}
	}
	return ""
}

func (c *Cluster) waitHealthy() error {
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		why := c.healthy()
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: cluster not healthy after %s: %s", clusterReadyTimeout, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MasterOf returns the index of the node that every running node says is
// the master of key's slot (CLUSTER KEYSLOT), or an error while they do not
// agree.
func (c *Cluster) MasterOf(key string) (int, error) {
	up := c.running()
	if len(up) == 0 {
		return -1, fmt.Errorf("redistest: no node running")
	}
	v, err := c.do(up[0], "CLUSTER", "KEYSLOT", key)
	if err != nil {
		return -1, err
	}
	slot, ok := v.(int64)
	if !ok {
		return -1, fmt.Errorf("redistest: CLUSTER KEYSLOT answered %T", v)
	}
	master := -1
	for _, i := range up {
		out, err := c.text(i, "CLUSTER", "NODES")
		if err != nil {
			return -1, err
		}
		m := c.ownerOf(parseNodes(out), slot)
		if m < 0 || (master >= 0 && m != master) {
			return -1, fmt.Errorf("redistest: nodes do not agree on the master of slot %d", slot)
		}
		master = m
	}
	return master, nil
}

// ownerOf returns the index of the master that serves slot in nodes, or -1.
func (c *Cluster) ownerOf(nodes []clusterNode, slot int64) int {
	addrs := c.Addrs()
	for _, n := range nodes {
		if !n.flags["master"] || n.flags["fail"] {
			continue
		}
		for _, r := range n.slots {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated or imported
			}
			lo, hi, found := strings.Cut(r, "-")
			if !found {
				hi = lo
			}
			a, _ := strconv.ParseInt(lo, 10, 64)
			b, _ := strconv.ParseInt(hi, 10, 64)
			if a <= slot && slot <= b {
				for i, addr := range addrs {
					if addr == n.addr {
						return i
					}
				}
			}
		}
	}
	return -1
}

// KillMaster kills the master of key's slot with SIGKILL, as in a crash, and
// returns its index once its replica has taken the slot over: every running
// node names another, running node as the slot's master and says
// cluster_state:ok (waiting at most 30 s; with [ClusterNodeTimeout] it takes
// about 2 to 3 s). Writes the master answered but had not yet sent to the
// replica are lost: Redis replicates asynchronously. The killed node stays
// down until [Cluster.StartNode].
func (c *Cluster) KillMaster(key string) (int, error) {
	m, err := c.MasterOf(key)
	if err != nil {
		return -1, err
	}
	if err := c.nodes[m].Kill(); err != nil {
		return -1, err
	}
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		n, err := c.MasterOf(key)
		if err == nil && n != m && c.stateOK() {
			return m, nil
		}
		if time.Now().After(deadline) {
			return m, fmt.Errorf("redistest: no replica took over the slot of %q within %s of killing node %d", key, clusterReadyTimeout, m)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) stateOK() bool {
	for _, i := range c.running() {
		info, err := c.text(i, "CLUSTER", "INFO")
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			return false
		}
	}
	return true
}

// StartNode starts node i again (after [Cluster.KillMaster]) on its port and
// directory; it rejoins from its nodes.conf, as a replica of the master that
// took its slots over, and StartNode returns once the cluster is healthy
// again as [StartCluster] defines it (waiting at most 30 s).
func (c *Cluster) StartNode(i int) error {
	if err := c.nodes[i].Start(); err != nil {
		return err
	}
	return c.waitHealthy()
}

// ReplicasOf returns the indexes of the replicas of the master of key's
// slot, as that master's CLUSTER NODES lists them.
func (c *Cluster) ReplicasOf(key string) ([]int, error) {
	m, err := c.MasterOf(key)
	if err != nil {
		return nil, err
	}
	out, err := c.text(m, "CLUSTER", "NODES")
	if err != nil {
		return nil, err
	}
	nodes := parseNodes(out)
	var self string
	for _, n := range nodes {
		if n.flags["myself"] {
			self = n.id
		}
	}
	var replicas []int
	for _, n := range nodes {
		if n.master != self || !n.flags["slave"] {
			continue
		}
		for i, addr := range c.Addrs() {
			if addr == n.addr {
				replicas = append(replicas, i)
			}
		}
	}
	return replicas, nil
}

// MoveSlot moves key's slot, with the keys in it, from its master to
// another master, as `redis-cli --cluster reshard` moves slots: CLUSTER
// SETSLOT IMPORTING on the target and MIGRATING on the source, MIGRATE of
// the slot's keys, then CLUSTER SETSLOT NODE on every master. Clients see
// ASK while the slot migrates and MOVED after. It returns the indexes of the
// old and the new master.
func (c *Cluster) MoveSlot(key string) (from, to int, err error) {
	from, err = c.MasterOf(key)
	if err != nil {
		return -1, -1, err
	}
	v, err := c.do(from, "CLUSTER", "KEYSLOT", key)
	if err != nil {
		return -1, -1, err
	}
	slot := v.(int64)
	out, err := c.text(from, "CLUSTER", "NODES")
	if err != nil {
		return -1, -1, err
	}
	ids := map[int]string{}
	var masters []int
	for _, n := range parseNodes(out) {
		for i, addr := range c.Addrs() {
			if addr == n.addr {
				ids[i] = n.id
				if n.flags["master"] && !n.flags["fail"] {
					masters = append(masters, i)
				}
			}
		}
	}
	to = -1
	for _, m := range masters {
		if m != from {
			to = m
			break
		}
	}
	if to < 0 {
		return from, -1, fmt.Errorf("redistest: no other master to move slot %d to", slot)
	}
	steps := []struct {
		node int
		args []any
	}{
		{to, []any{"CLUSTER", "SETSLOT", slot, "IMPORTING", ids[from]}},
		{from, []any{"CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to]}},
	}
	for _, s := range steps {
		if _, err := c.do(s.node, s.args...); err != nil {
			return from, to, fmt.Errorf("redistest: %v on node %d: %w", s.args, s.node, err)
		}
	}
	host, port, _ := net.SplitHostPort(c.nodes[to].Addr())
	for {
		v, err := c.do(from, "CLUSTER", "GETKEYSINSLOT", slot, 100)
		if err != nil {
			return from, to, err
		}
		keys, _ := v.([]any)
		if len(keys) == 0 {
			break
		}
		args := append([]any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}, keys...)
		if _, err := c.do(from, args...); err != nil {
			return from, to, fmt.Errorf("redistest: MIGRATE slot %d: %w", slot, err)
		}
	}
	for _, m := range []int{to, from} {
		if _, err := c.do(m, "CLUSTER", "SETSLOT", slot, "NODE", ids[to]); err != nil {
			return from, to, fmt.Errorf("redistest: CLUSTER SETSLOT NODE on node %d: %w", m, err)
		}
	}
	for _, m := range masters {
		if m != to && m != from {
			if _, err := c.do(m, "CLUSTER", "SETSLOT", slot, "NODE", ids[to]); err != nil {
				return from, to, fmt.Errorf("redistest: CLUSTER SETSLOT NODE on node %d: %w", m, err)
			}
		}
	}
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		if m, err := c.MasterOf(key); err == nil && m == to {
			return from, to, nil
		}
		if time.Now().After(deadline) {
			return from, to, fmt.Errorf("redistest: the nodes do not agree that node %d serves slot %d after %s", to, slot, clusterReadyTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
