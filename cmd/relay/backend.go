package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v3"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/natsjs"
	"github.com/go-relay/relay/redisstreams"
)

// backend is an open connection to the server the command line names.
type backend struct {
	addr    string // what to name in messages: the URL given
	in      relay.Inspector
	timeout time.Duration
	close   func()
}

// call returns a context for one call to the server: done after the
// --timeout, or when parent is.
func (b *backend) call(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, b.timeout)
}

// open connects to the server of --nats or --redis, failing within
// --timeout with the address in the error when it does not answer.
func open(ctx context.Context, cmd *cli.Command) (*backend, error) {
	natsURL, timeout := cmd.String("nats"), cmd.Duration("timeout")
	redisFlag, redisURL, given := "", "", 0
	for _, f := range []string{"redis", "redis-cluster", "redis-sentinel"} {
		if u := cmd.String(f); u != "" {
			redisFlag, redisURL, given = f, u, given+1
		}
	}
	if given > 1 {
		return nil, usagef("give one of --redis, --redis-cluster and --redis-sentinel (or unset REDIS_URL)")
	}
	acks := cmd.Int("replica-acks")
	if timeout <= 0 {
		return nil, usagef("--timeout must be positive, not %v", timeout)
	}
	if acks < 0 || acks > redisstreams.MaxReplicaAcks {
		return nil, usagef("--replica-acks must be from 0 to %d, not %d", redisstreams.MaxReplicaAcks, acks)
	}
	switch {
	case natsURL != "" && redisURL != "":
		return nil, usagef("both a NATS server (%s) and a Redis (%s) are set; give one: --nats URL or --redis URL (or unset NATS_URL / REDIS_URL)", natsURL, redisURL)
	case natsURL != "" && acks > 0:
		return nil, usagef("--replica-acks is for Redis: a JetStream stream's replicas acknowledge a publish as its own config says")
	case natsURL != "":
		return openNATS(natsURL, timeout)
	case redisURL != "":
		return openRedis(ctx, redisFlag, redisURL, timeout, acks)
	}
	return nil, usagef("no server: give --nats URL or --redis URL (or set NATS_URL / REDIS_URL)")
}

func openNATS(url string, timeout time.Duration) (*backend, error) {
	nc, err := nats.Connect(url, nats.Name("relay command"), nats.Timeout(timeout), nats.RetryOnFailedConnect(false))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(timeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("NATS at %s: %w", url, err)
	}
	in, err := natsjs.NewInspector(js)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &backend{addr: url, in: in, timeout: timeout, close: nc.Close}, nil
}

// silent drops go-redis' own log lines (a failed dial is printed once per
// attempt): the command reports the error itself, once, with the address.
type silent struct{}

// Printf implements go-redis' logger interface by dropping the line.
func (silent) Printf(context.Context, string, ...any) {}

// openRedis connects to the Redis that url names, read as flag says: a
// single server (--redis), a cluster (--redis-cluster) or a master behind
// Sentinel (--redis-sentinel). With acks > 0 a redrive waits for that many
// replicas, up to half of timeout (WAIT's answer must come before the
// client's read timeout, which is timeout).
func openRedis(ctx context.Context, flag, url string, timeout time.Duration, acks int) (*backend, error) {
	redis.SetLogger(silent{})
	c, err := redisClient(flag, url, timeout)
	if err != nil {
		return nil, usagef("--%s %s: %v", flag, url, err)
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("connect to Redis at %s: %w", url, err)
	}
	// A tail's XREAD blocks: its own calls set their timeouts.
	var inOpts []redisstreams.Option
	if acks > 0 {
		inOpts = append(inOpts, redisstreams.WithReplicaAcks(acks, min(max(timeout/2, time.Millisecond), redisstreams.MaxReplicaAckTimeout)))
	}
	in, err := redisstreams.NewInspector(c, inOpts...)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return &backend{addr: url, in: in, timeout: timeout, close: func() { _ = c.Close() }}, nil
}

// withBackend opens the backend, runs f with it and closes it.
func withBackend(ctx context.Context, cmd *cli.Command, f func(*backend) error) error {
	b, err := open(ctx, cmd)
	if err != nil {
		return err
	}
	defer b.close()
	return f(b)
}

// redisClient makes the client of url for flag, every timeout set to
// timeout and no retries: an unreachable server fails at once.
func redisClient(flag, url string, timeout time.Duration) (redis.UniversalClient, error) {
	switch flag {
	case "redis-cluster":
		o, err := redis.ParseClusterURL(url)
		if err != nil {
			return nil, err
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries = timeout, timeout, timeout, -1
		return redis.NewClusterClient(o), nil
	case "redis-sentinel":
		o, err := redis.ParseFailoverURL(url)
		if err != nil {
			return nil, err
		}
		if o.MasterName == "" {
			return nil, fmt.Errorf("no master_name in the URL: Sentinel needs the name of the master to find")
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries = timeout, timeout, timeout, -1
		return redis.NewFailoverClient(o), nil
	}
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries = timeout, timeout, timeout, -1
	return redis.NewClient(o), nil
}
