package benchmarks

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/redis/go-redis/v9"
)

// Env starts the servers the sessions need, once and only when first asked:
// a memory-only run starts none. NATS_URL and REDIS_URL point it at external
// servers instead. Close stops what it started.
type Env struct {
	mu        sync.Mutex
	natsURL   string
	redisAddr string
	stops     []func()
}

// NATS returns the URL of a JetStream-enabled server: NATS_URL, or an
// embedded nats-server storing on a temporary directory.
func (e *Env) NATS() (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.natsURL != "" {
		return e.natsURL, nil
	}
	if u := os.Getenv("NATS_URL"); u != "" {
		e.natsURL = u
		return u, nil
	}
	dir, err := os.MkdirTemp("", "relaybench-nats-")
	if err != nil {
		return "", err
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("nats-server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		os.RemoveAll(dir)
		return "", fmt.Errorf("nats-server: not ready after 10s")
	}
	e.stops = append(e.stops, func() { ns.Shutdown(); ns.WaitForShutdown(); os.RemoveAll(dir) })
	e.natsURL = ns.ClientURL()
	return e.natsURL, nil
}

// Redis returns the address of a Redis server: the host:port of REDIS_URL, or
// a redis-server (from PATH) spawned on a free loopback port without
// persistence.
func (e *Env) Redis() (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.redisAddr != "" {
		return e.redisAddr, nil
	}
	if u := os.Getenv("REDIS_URL"); u != "" {
		opt, err := redis.ParseURL(u)
		if err != nil {
			return "", fmt.Errorf("REDIS_URL: %w", err)
		}
		e.redisAddr = opt.Addr
		return e.redisAddr, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--loglevel", "warning")
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start redis-server (set REDIS_URL to use another): %w", err)
	}
	stop := func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); c.Ping(context.Background()).Err() != nil; {
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("redis-server on %s: not ready after 10s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.stops = append(e.stops, stop)
	e.redisAddr = addr
	return addr, nil
}

// Close stops the servers Env started.
func (e *Env) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, stop := range e.stops {
		stop()
	}
	e.stops, e.natsURL, e.redisAddr = nil, "", ""
}
