package netfault

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer accepts connections on loopback and echoes every line, until
// the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { io.Copy(c, c); c.Close() })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func newTestProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := NewProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, p *Proxy) *client {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c: c, r: bufio.NewReader(c)}
}

// roundTrip sends a line and reads the echo within timeout.
func (c *client) roundTrip(line string, timeout time.Duration) (string, error) {
	c.c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return got[:len(got)-1], nil
}

func mustEcho(t *testing.T, c *client, line string) {
	t.Helper()
	got, err := c.roundTrip(line, 2*time.Second)
	if err != nil || got != line {
		t.Fatalf("echo of %q: got %q, %v", line, got, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestProxyForwards(t *testing.T) {
	p := newTestProxy(t)
	c := dial(t, p)
	for _, line := range []string{"a", "hello", string(make([]byte, 100_000))} {
		mustEcho(t, c, line)
	}
	if p.Accepted() != 1 || p.Chunks() < 3 {
		t.Errorf("accepted %d, chunks %d; want 1 and at least 3", p.Accepted(), p.Chunks())
	}
}

func TestProxyCutResetsOpenConnectionsOnly(t *testing.T) {
	p := newTestProxy(t)
	c := dial(t, p)
	mustEcho(t, c, "before")
	p.Cut()
	if _, err := c.roundTrip("after", 2*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("round trip on a cut connection: %v, want a connection error", err)
	}
	mustEcho(t, dial(t, p), "new connection")
}

func TestProxyRefuse(t *testing.T) {
	p := newTestProxy(t)
	p.Refuse(true)
	// The reset may come before the dial returns, or at the first read.
	c, err := net.Dial("tcp", p.Addr())
	if err == nil {
		defer c.Close()
		_, err = (&client{c: c, r: bufio.NewReader(c)}).roundTrip("x", 2*time.Second)
	}
	if err == nil || isTimeout(err) {
		t.Fatalf("connection while refusing: %v, want a connection error", err)
	}
	p.Refuse(false)
	mustEcho(t, dial(t, p), "accepted again")
}

func TestProxyLatency(t *testing.T) {
	p := newTestProxy(t)
	c := dial(t, p)
	mustEcho(t, c, "warm")
	const d = 100 * time.Millisecond
	p.SetLatency(d)
	start := time.Now()
	mustEcho(t, c, "slow")
	if rt := time.Since(start); rt < 2*d {
		t.Errorf("round trip took %s with %s latency each way, want at least %s", rt, d, 2*d)
	}
	p.SetLatency(0)
	start = time.Now()
	mustEcho(t, c, "fast")
	if rt := time.Since(start); rt > d {
		t.Errorf("round trip took %s after the latency was removed", rt)
	}
}

func TestProxyBlackHole(t *testing.T) {
	p := newTestProxy(t)
	idle := dial(t, p)
	mustEcho(t, idle, "idle")
	busy := dial(t, p)
	mustEcho(t, busy, "busy")

	p.BlackHole(true)
	if _, err := busy.roundTrip("swallowed", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("round trip in a black hole: %v, want a timeout (silence)", err)
	}
	fresh := dial(t, p)
	if _, err := fresh.roundTrip("swallowed too", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("round trip on a new connection in a black hole: %v, want a timeout", err)
	}
	if p.Dropped() == 0 {
		t.Error("Dropped() = 0 after a black hole swallowed data")
	}
	p.BlackHole(false)

	// The connections that lost data are reset; the idle one goes on.
	for name, c := range map[string]*client{"busy": busy, "fresh": fresh} {
		if !waitFor(2*time.Second, func() bool {
			_, err := c.roundTrip("after", 200*time.Millisecond)
			return err != nil && !isTimeout(err)
		}) {
			t.Errorf("%s connection not reset after the black hole", name)
		}
	}
	mustEcho(t, idle, "still there")
	mustEcho(t, dial(t, p), "healed")
}

func TestProxyCloseLeavesNothing(t *testing.T) {
	p := newTestProxy(t)
	c := dial(t, p)
	mustEcho(t, c, "x")
	p.SetLatency(50 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if p.Conns() != 0 {
		t.Errorf("%d connections open after Close", p.Conns())
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Error("proxy still accepts after Close")
	}
}

// waitFor polls cond every 20 ms until it holds or timeout passes, and
// reports whether it held.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
