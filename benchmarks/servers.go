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

	"github.com/ThreeDotsLabs/watermill"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
		anchor := "relaybench-anchor-" + watermill.NewShortUUID()
		del, err := keepStreamsDir(u, anchor)
		if err != nil {
			return "", fmt.Errorf("NATS_URL: %w", err)
		}
		e.stops = append(e.stops, del)
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
	stop := func() { ns.Shutdown(); ns.WaitForShutdown(); os.RemoveAll(dir) }
	if _, err := keepStreamsDir(ns.ClientURL(), "relaybench-anchor"); err != nil {
		stop()
		return "", fmt.Errorf("nats-server: %w", err)
	}
	e.stops = append(e.stops, stop)
	e.natsURL = ns.ClientURL()
	return e.natsURL, nil
}

// keepStreamsDir creates an empty stream named name on the server at url, so
// that the account always holds a stream, and returns a function that deletes
// it. Every session deletes the streams it made when it closes; when that
// leaves the account without streams, nats-server removes the account's
// streams directory in a goroutine of its own, which races with the next
// session's stream creation: that creation's mkdir of its directory under the
// removed one fails, and the client gets "error creating store for stream"
// (err_code 10049). The wider the scheduling delays, the likelier: the smoke
// test failed so while the machine was busy. A stream that stays keeps the
// directory non-empty, so the server never removes it.
func keepStreamsDir(url, name string) (del func(), err error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := jetstream.StreamConfig{Name: name, Subjects: []string{"relaybench._anchor." + name}, Storage: jetstream.FileStorage}
	if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return nil, fmt.Errorf("create stream %s: %w", name, err)
	}
	return func() {
		nc, err := nats.Connect(url)
		if err != nil {
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, name) // best effort: the benchmark is over
	}, nil
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
	stop := func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }
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
