package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"
	"github.com/redis/go-redis/v9"
)

// Start returns a Redis server for the test from the first source available
// (REDIS_URL, redis-server on PATH, Docker; see the package doc), with a
// fresh [Server.KeyPrefix], and shuts it down in t.Cleanup. cfg, at most one,
// configures a server started here and is ignored with REDIS_URL. With no
// source Start skips the test, or fails it under CI=true; it fails the test
// if a source is there but the server does not come up.
func Start(t testing.TB, cfg ...Config) *Server {
	t.Helper()
	if len(cfg) > 1 {
		t.Fatal("redistest: Start takes at most one Config")
	}
	var c Config
	if len(cfg) == 1 {
		c = cfg[0]
	}
	prefix := newPrefix(t.Name())
	if url := os.Getenv("REDIS_URL"); url != "" {
		return startExternal(t, url, prefix)
	}
	if _, err := exec.LookPath("redis-server"); err == nil {
		s, err := Run(c)
		if err != nil {
			t.Fatal(err)
		}
		s.prefix = prefix
		t.Cleanup(func() { shutdown(t, s) })
		return s
	}
	s, why := startDocker(t, c, prefix)
	if s != nil {
		return s
	}
	msg := "redistest: no Redis server: set REDIS_URL (e.g. redis://127.0.0.1:6379/0), put redis-server on PATH, or start a Docker engine; " + why
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	skip(t, &serverSkips, msg)
	return nil
}

func shutdown(t testing.TB, s *Server) {
	if err := s.Shutdown(); err != nil {
		t.Error(err)
	}
}

// startExternal checks that REDIS_URL answers and, in cleanup, deletes the
// keys that contain prefix.
func startExternal(t testing.TB, url, prefix string) *Server {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("redistest: REDIS_URL: %v", err)
	}
	rc := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rc.Ping(ctx).Err(); err != nil {
		rc.Close()
		t.Fatalf("redistest: REDIS_URL server at %s: %v", opts.Addr, err)
	}
	t.Cleanup(func() {
		defer rc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		iter := rc.Scan(ctx, 0, "*"+prefix+"*", 1000).Iterator()
		for err == nil && iter.Next(ctx) {
			err = rc.Del(ctx, iter.Val()).Err()
		}
		if err == nil {
			err = iter.Err()
		}
		if err != nil {
			t.Errorf("redistest: delete keys with prefix %q: %v", prefix, err)
		}
	})
	return &Server{addr: opts.Addr, url: url, prefix: prefix, tb: t,
		fixed: "the external server at REDIS_URL (" + opts.Addr + ")"}
}

// startDocker runs image redis:7 when a Docker engine answers. It returns a
// nil Server and the reason when there is no engine, and fails the test when
// an engine answers but the container does not come up.
func startDocker(t testing.TB, c Config, prefix string) (*Server, string) {
	t.Helper()
	pool, err := dockertest.NewPool("")
	if err != nil {
		return nil, "docker: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pool.Client.PingWithContext(ctx); err != nil {
		return nil, "docker: " + err.Error()
	}
	res, err := pool.RunWithOptions(&dockertest.RunOptions{
		Repository:   "redis",
		Tag:          "7",
		Cmd:          append([]string{"redis-server"}, persistArgs(c.AppendOnly)...),
		PortBindings: map[docker.Port][]docker.PortBinding{"6379/tcp": {{HostIP: "127.0.0.1"}}},
	}, func(hc *docker.HostConfig) { hc.AutoRemove = true })
	if err != nil {
		t.Fatalf("redistest: run redis:7 in Docker: %v", err)
	}
	s := &Server{addr: res.GetHostPort("6379/tcp"), prefix: prefix, tb: t,
		fixed: "a server in Docker",
		purge: sync.OnceValue(func() error {
			defer pool.Client.HTTPClient.CloseIdleConnections()
			return pool.Purge(res)
		}),
	}
	t.Cleanup(func() { shutdown(t, s) })
	if err := waitPing(s.addr, nil); err != nil {
		t.Fatalf("redistest: redis:7 in Docker at %s: %v", s.addr, err)
	}
	return s, ""
}

// Client returns a client of s, configured from [Server.URL], and closes it
// in t.Cleanup unless the test has closed it already.
func Client(t testing.TB, s *Server) redis.UniversalClient {
	t.Helper()
	opts, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	rc := redis.NewClient(opts)
	t.Cleanup(func() {
		if err := rc.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
			t.Error(fmt.Errorf("redistest: close client: %w", err))
		}
	})
	return rc
}
