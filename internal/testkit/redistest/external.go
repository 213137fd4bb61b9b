package redistest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ExternalOKEnv names the environment variable that, set to "1", lets tests
// skip what a server they did not start cannot do (restart, kill, pause,
// reconfigure) even under CI=true, where such a skip is otherwise a failure.
// .ci/run sets it for its pass against external servers.
const ExternalOKEnv = "RELAY_EXTERNAL_OK"

// RequireControl skips t unless [Start] will give it a redis-server child
// process it can restart, kill and pause: with REDIS_URL set, or without
// redis-server on PATH (Docker), it cannot. Call it first in a test that
// needs to, before anything waits on the server. Under CI=true it fails t
// instead, unless RELAY_EXTERNAL_OK=1 ([ExternalOKEnv]) says that such skips
// are expected.
func RequireControl(t testing.TB) {
	t.Helper()
	var why string
	if os.Getenv("REDIS_URL") != "" {
		why = "the external server at REDIS_URL"
	} else if _, err := exec.LookPath("redis-server"); err != nil {
		why = "a server in Docker (no redis-server on PATH)"
	} else {
		return
	}
	endUncontrolled(t, "redistest: this test restarts, kills, pauses or reconfigures its Redis server, which it cannot do to "+
		why+"; put redis-server on PATH and unset REDIS_URL to run it")
}

// endUncontrolled skips t with msg, or fails it under CI=true unless
// RELAY_EXTERNAL_OK=1.
func endUncontrolled(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" && os.Getenv(ExternalOKEnv) != "1" {
		t.Fatal(msg + " (CI=true; set " + ExternalOKEnv + "=1 to allow this skip)")
	}
	t.Skip(msg)
}

// Options returns client options for the server at addr ("host:port"):
// REDIS_URL's options (database number, user name, password, TLS) with addr
// as the address when REDIS_URL is set and parses, the defaults otherwise.
// It is for clients that dial something other than [Server.URL], such as a
// proxy in front of the server; [Client] already honours REDIS_URL.
func Options(addr string) *redis.Options {
	if url := os.Getenv("REDIS_URL"); url != "" {
		if opts, err := redis.ParseURL(url); err == nil {
			opts.Addr = addr
			return opts
		}
	}
	return &redis.Options{Addr: addr}
}

// RemoveNewKeys is for keys a test does not name itself, such as the topics
// of relay's conformance suite ("relay_test_…", "relay_wm_…"): with
// REDIS_URL set, it notes the keys of s that begin with one of prefixes now
// and, in t.Cleanup, deletes those created since. A run of the same names on
// the same server at the same time could lose its keys, so the suite's names
// are random. Without REDIS_URL it does nothing: the server is the test's
// own. It fails t when the server cannot be asked.
func RemoveNewKeys(t testing.TB, s *Server, prefixes ...string) {
	t.Helper()
	if os.Getenv("REDIS_URL") == "" {
		return
	}
	rc := redis.NewClient(Options(s.Addr()))
	before, err := keysWith(rc, prefixes)
	if err != nil {
		rc.Close()
		t.Fatalf("redistest: list keys at REDIS_URL: %v", err)
	}
	t.Cleanup(func() {
		defer rc.Close()
		after, err := keysWith(rc, prefixes)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
			defer cancel()
			for k := range after {
				if _, old := before[k]; !old && err == nil {
					err = rc.Del(ctx, k).Err()
				}
			}
		}
		if err != nil {
			t.Errorf("redistest: remove the test's keys: %v", err)
		}
	})
}

// cleanupTimeout bounds the listing or the removal of keys.
const cleanupTimeout = 10 * time.Second

// keysWith returns the keys that begin with one of prefixes.
func keysWith(rc *redis.Client, prefixes []string) (map[string]struct{}, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	keys := make(map[string]struct{})
	for _, p := range prefixes {
		iter := rc.Scan(ctx, 0, p+"*", 1000).Iterator()
		for iter.Next(ctx) {
			keys[iter.Val()] = struct{}{}
		}
		if err := iter.Err(); err != nil {
			return nil, err
		}
	}
	return keys, nil
}
