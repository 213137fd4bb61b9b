// Package exampleenv opens the backend a runnable example under examples/
// runs on, so that each example keeps only its own code: which relay options
// it passes and what it prints.
//
// [Open] takes the -backend, -nats-url and -redis-url flags ([Flags]) and
// returns an [Env]: for "memory" a fresh [memory.Hub]; for "nats" a
// [jetstream.JetStream] on the server at -nats-url, or on a nats-server
// embedded in the process; for "redis" a [redis.UniversalClient] on the
// server at -redis-url, or on a redis-server from PATH started as a child
// process. [Env.Close] closes the connection and stops the server.
//
// Only the examples import this package (it lives under examples/internal).
package exampleenv

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/memory"
)

// The backend names that -backend and [Open] accept.
const (
	Memory = "memory"
	NATS   = "nats"
	Redis  = "redis"
)

// PingTimeout bounds the PING that [Open] sends to a Redis server, so that a
// wrong -redis-url fails at once rather than leave the example waiting.
const PingTimeout = 5 * time.Second

// Flags are the flags every example takes to choose its backend.
type Flags struct {
	Backend  string // Memory, NATS or Redis
	NATSURL  string // empty: start an embedded nats-server
	RedisURL string // empty: start redis-server from PATH
}

// Register defines -backend (defaulting to backend), -nats-url and
// -redis-url on fs, stored in f.
func (f *Flags) Register(fs *flag.FlagSet, backend string) {
	fs.StringVar(&f.Backend, "backend", backend, "broker: memory, nats (embedded unless -nats-url) or redis (local redis-server unless -redis-url)")
	fs.StringVar(&f.NATSURL, "nats-url", "", "use the NATS server at this URL (nats://host:port) instead of the embedded one")
	fs.StringVar(&f.RedisURL, "redis-url", "", "use the Redis server at this URL (redis://host:port/db) instead of starting redis-server")
}

// Env is an opened backend: the server it runs on (started here or given by
// URL) and the client the examples hand to relay's constructors. Exactly one
// of Hub, JetStream and Redis is set, as Backend says. Relay's brokers never
// close the client they were given: [Env.Close] does, after the example has
// closed its brokers.
type Env struct {
	Backend string // Memory, NATS or Redis

	// Desc describes the backend in a line of output, such as "NATS
	// JetStream (embedded nats-server)" or "Redis Streams at redis://h:6379/0".
	Desc string
	// URL is the server's URL (empty for Memory); Addr, for Redis only, its
	// host:port.
	URL, Addr string
	// Shared is true when the server was given by URL: other programs may use
	// it, so the example should put a namespace ([Env.Namespace]) in front
	// of its topics. A server started here is fresh and private.
	Shared bool

	Hub       *memory.Hub
	JetStream jetstream.JetStream
	Redis     redis.UniversalClient

	closers []func() // server, then connection: run in reverse order by Close
}

// Logger returns the logger an example hands to relay's constructors: text
// on stderr, errors only, or every event (slog.LevelDebug) when verbose.
func Logger(verbose bool) *slog.Logger {
	level := slog.LevelError
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// Open connects to (or starts) the backend that f names. natsOpts are passed
// to [nats.Connect]. The caller must call [Env.Close] once done, also when it
// failed to build its brokers.
func Open(f Flags, natsOpts ...nats.Option) (*Env, error) {
	switch f.Backend {
	case Memory:
		hub, err := memory.NewHub() // the topic space that every face shares
		if err != nil {
			return nil, err
		}
		return &Env{Backend: Memory, Desc: "memory (in-process hub)", Hub: hub}, nil
	case NATS:
		return openNATS(f.NATSURL, natsOpts)
	case Redis:
		return openRedis(f.RedisURL)
	}
	return nil, fmt.Errorf("unknown backend %q (want memory, nats or redis)", f.Backend)
}

func openNATS(url string, opts []nats.Option) (*Env, error) {
	e := &Env{Backend: NATS, Desc: "NATS JetStream at " + url, URL: url, Shared: true}
	if url == "" {
		// The real nats-server, embedded in this process: JetStream on a
		// temporary file store, loopback only.
		srv, err := natstest.Run(natstest.Config{})
		if err != nil {
			return nil, fmt.Errorf("start embedded NATS server: %w", err)
		}
		e.closers = append(e.closers, srv.Shutdown)
		e.Desc, e.URL, e.Shared = "NATS JetStream (embedded nats-server)", srv.URL(), false
	}
	nc, err := nats.Connect(e.URL, opts...)
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("connect to NATS at %s: %w", e.URL, err)
	}
	e.closers = append(e.closers, nc.Close)
	if e.JetStream, err = jetstream.New(nc); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func openRedis(url string) (*Env, error) {
	e := &Env{Backend: Redis, Desc: "Redis Streams at " + url, URL: url, Shared: true}
	if url == "" {
		if _, err := exec.LookPath("redis-server"); err != nil {
			return nil, errors.New("no -redis-url given and no redis-server on PATH: install redis-server " +
				"(apt-get install redis-server) or point the example at a server with -redis-url redis://host:6379/0")
		}
		srv, err := redistest.Run(redistest.Config{})
		if err != nil {
			return nil, fmt.Errorf("start redis-server: %w", err)
		}
		e.closers = append(e.closers, func() { _ = srv.Shutdown() })
		e.Desc, e.URL, e.Shared = "Redis Streams (local redis-server)", srv.URL(), false
	}
	opts, err := redis.ParseURL(e.URL)
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("parse -redis-url: %w", err)
	}
	e.Addr = opts.Addr
	client := redis.NewClient(opts)
	e.Redis = client
	e.closers = append(e.closers, func() { _ = client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), PingTimeout)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		e.Close()
		return nil, fmt.Errorf("connect to Redis at %s: %w", opts.Addr, err)
	}
	return e, nil
}

// Close closes the connection, then stops the server if Open started it.
// Close the brokers made on e first. Calling Close again does nothing.
func (e *Env) Close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	e.closers = nil
}

// Namespace returns the prefix to put in front of every topic: empty on a
// server of its own, and name, '-', a base-36 timestamp and '.' on a shared
// one ("direct-m3x0q2a1.") to keep runs apart.
func (e *Env) Namespace(name string) string {
	if !e.Shared {
		return ""
	}
	return name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "."
}
