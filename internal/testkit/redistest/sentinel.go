package redistest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// SentinelMaster is the master name [StartSentinel]'s sentinel monitors.
const SentinelMaster = "mymaster"

// Sentinel is a Redis Sentinel from [StartSentinel], monitoring one master
// under the name [SentinelMaster].
type Sentinel struct {
	addr string
}

// Addr is the sentinel's "host:port", where clients ask for the master.
func (s *Sentinel) Addr() string { return s.addr }

// URL is a URL of the sentinel as go-redis' ParseFailoverURL reads it, with
// the master's name.
func (s *Sentinel) URL() string { return "redis://" + s.addr + "?master_name=" + SentinelMaster }

// StartSentinel starts one Redis Sentinel (redis-server --sentinel) on a
// free loopback port, monitoring master (quorum 1), waits until it answers,
// and stops it in t.Cleanup. It needs redis-server on PATH and a master
// started here (not REDIS_URL): otherwise the test is skipped, or failed
// under CI=true.
func StartSentinel(t testing.TB, master *Server) *Sentinel {
	t.Helper()
	master.controllable("monitor with a sentinel")
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "redistest: a sentinel needs redis-server on PATH (apt-get install redis-server)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		skip(t, &clusterSkips, msg) // counted with the tests that need redis-server itself
	}
	dir := t.TempDir()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	host, mport, err := net.SplitHostPort(master.Addr())
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 1000\n",
		port, dir, SentinelMaster, host, mport, SentinelMaster)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	cmd.Dir = dir
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("redistest: start sentinel: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitPing(addr, done); err != nil {
		t.Fatalf("redistest: sentinel on %s: %v", addr, err)
	}
	return &Sentinel{addr: addr}
}
