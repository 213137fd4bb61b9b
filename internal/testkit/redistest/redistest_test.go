package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/go-relay/relay/internal/testkit/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }

// eventually retries op, every 20 ms for at most 10 s, while a client
// reconnects after a restart.
func eventually(t *testing.T, op func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		err := op(ctx)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("still failing after 10s: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestAppendOnlyWriteSurvives(t *testing.T) {
	for _, tc := range []struct {
		name  string
		crash func(*redistest.Server) error
	}{
		{"restart", (*redistest.Server).Restart},
		{"kill then start", func(s *redistest.Server) error {
			if err := s.Kill(); err != nil {
				return err
			}
			return s.Start()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := redistest.Start(t, redistest.Config{AppendOnly: true})
			rc := redistest.Client(t, s)
			stream := s.KeyPrefix() + "orders"
			ctx := context.Background()
			id, err := rc.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"k", "v"}}).Result()
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.crash(s); err != nil {
				t.Fatal(err)
			}
			eventually(t, func(ctx context.Context) error {
				msgs, err := rc.XRange(ctx, stream, "-", "+").Result()
				if err == nil && (len(msgs) != 1 || msgs[0].ID != id) {
					t.Fatalf("XRANGE after %s = %v, want one message %s", tc.name, msgs, id)
				}
				return err
			})
		})
	}
}

func TestWithoutAppendOnlyRestartLosesData(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	rc := redistest.Client(t, s)
	key := s.KeyPrefix() + "k"
	if err := rc.Set(context.Background(), key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, func(ctx context.Context) error {
		err := rc.Get(ctx, key).Err()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err == nil {
			t.Fatal("key survived a restart without persistence")
		}
		return err
	})
}

// A paused server answers nothing until resumed, and a paused server still
// stops at once.
func TestPauseHangsServerUntilResume(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: s.Addr(), ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })
	if err := rc.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Ping(context.Background()).Err(); err == nil {
		t.Fatal("a paused server answered PING")
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, func(ctx context.Context) error { return rc.Ping(ctx).Err() })
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Stop of a paused server took %v", took)
	}
}

func TestKeyPrefixIsUniqueAndAValidTopicPrefix(t *testing.T) {
	t.Parallel()
	a, b := redistest.Start(t), redistest.Start(t)
	if a.KeyPrefix() == b.KeyPrefix() {
		t.Fatalf("two Start calls share prefix %q", a.KeyPrefix())
	}
	if p := a.KeyPrefix(); !strings.HasPrefix(p, "TestKeyPrefixIsUniqueAndAValidTopicPrefix-") || !strings.HasSuffix(p, ".") {
		t.Fatalf("KeyPrefix = %q", p)
	}
}

// fakeTB records how a helper ended the test instead of ending the real one.
type fakeTB struct {
	testing.TB
	mu             sync.Mutex
	skipped, fatal string
	cleanups       []func()
}

func (f *fakeTB) Skip(args ...any)               { f.end(&f.skipped, fmt.Sprint(args...)) }
func (f *fakeTB) Fatal(args ...any)              { f.end(&f.fatal, fmt.Sprint(args...)) }
func (f *fakeTB) Fatalf(format string, a ...any) { f.end(&f.fatal, fmt.Sprintf(format, a...)) }
func (f *fakeTB) Cleanup(fn func())              { f.cleanups = append(f.cleanups, fn) }

// end records msg and stops the calling goroutine, as Skip and Fatal do.
func (f *fakeTB) end(dst *string, msg string) {
	f.mu.Lock()
	*dst = msg
	f.mu.Unlock()
	runtime.Goexit()
}

// run calls fn as a test body on f, like the testing package would, and runs
// the cleanups it registered.
func (f *fakeTB) run(fn func(testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestUncontrollableServerSkipsOrFailsUnderCI(t *testing.T) {
	real := redistest.Start(t)
	for _, tc := range []struct {
		name, ci string
		env      map[string]string
		wantSkip bool
	}{
		{"no source skips", "", map[string]string{"PATH": t.TempDir(), "DOCKER_HOST": "unix:///nonexistent.sock"}, true},
		{"no source fails under CI", "true", map[string]string{"PATH": t.TempDir(), "DOCKER_HOST": "unix:///nonexistent.sock"}, false},
		{"REDIS_URL restart skips", "", map[string]string{"REDIS_URL": real.URL()}, true},
		{"REDIS_URL restart fails under CI", "true", map[string]string{"REDIS_URL": real.URL()}, false},
		{"REDIS_URL restart skips under CI with RELAY_EXTERNAL_OK=1", "true",
			map[string]string{"REDIS_URL": real.URL(), redistest.ExternalOKEnv: "1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			t.Setenv("REDIS_URL", "")
			t.Setenv(redistest.ExternalOKEnv, "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			f := &fakeTB{TB: t}
			f.run(func(tb testing.TB) {
				s := redistest.Start(tb)
				rc := redistest.Client(tb, s)
				if err := rc.Set(context.Background(), s.KeyPrefix()+"k", "v", 0).Err(); err != nil {
					t.Errorf("SET on REDIS_URL server: %v", err)
				}
				s.Restart()
				t.Error("Restart returned on a server it cannot restart")
			})
			got := map[bool]string{true: f.skipped, false: f.fatal}[tc.wantSkip]
			if got == "" || f.skipped != "" && f.fatal != "" {
				t.Fatalf("skipped=%q fatal=%q, want only %s", f.skipped, f.fatal, map[bool]string{true: "skip", false: "fatal"}[tc.wantSkip])
			}
			t.Log(got)
		})
	}
	// The REDIS_URL cases' cleanups deleted their prefixed keys.
	if n, err := redistest.Client(t, real).DBSize(context.Background()).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE after REDIS_URL tests = %d, %v; want 0", n, err)
	}
}

func TestOptionsKeepREDIS_URL(t *testing.T) {
	t.Setenv("REDIS_URL", "redis://user:secret@127.0.0.1:1/5")
	o := redistest.Options("127.0.0.1:2")
	if o.Addr != "127.0.0.1:2" || o.DB != 5 || o.Username != "user" || o.Password != "secret" {
		t.Errorf("Options = addr %q db %d user %q password %q; want 127.0.0.1:2, 5, user, secret", o.Addr, o.DB, o.Username, o.Password)
	}
	t.Setenv("REDIS_URL", "")
	if o := redistest.Options("127.0.0.1:2"); o.Addr != "127.0.0.1:2" || o.DB != 0 {
		t.Errorf("Options without REDIS_URL = addr %q db %d; want 127.0.0.1:2, 0", o.Addr, o.DB)
	}
}

// With REDIS_URL, the keys with the given beginnings that a test created are
// gone once the test is; older keys and other names stay.
func TestRemoveNewKeysOnExternalServer(t *testing.T) {
	real := redistest.Start(t)
	rc := redistest.Client(t, real)
	c := context.Background()
	for _, k := range []string{"relay_test_old", "unrelated"} {
		if err := rc.Set(c, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("REDIS_URL", real.URL()+"/0")
	t.Run("user", func(t *testing.T) {
		s := redistest.Start(t)
		redistest.RemoveNewKeys(t, s, "relay_test_")
		if err := rc.Set(c, "relay_test_new", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	})
	for k, want := range map[string]int64{"relay_test_old": 1, "unrelated": 1, "relay_test_new": 0} {
		if n, err := rc.Exists(c, k).Result(); err != nil || n != want {
			t.Errorf("EXISTS %s = %d, %v; want %d", k, n, err, want)
		}
	}
}

// A sentinel from StartSentinel names the master it monitors, and a
// failover client reaches the master through it.
func TestSentinelFindsItsMaster(t *testing.T) {
	srv := redistest.Start(t)
	s := redistest.StartSentinel(t, srv)
	fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: redistest.SentinelMaster, SentinelAddrs: []string{s.Addr()}})
	t.Cleanup(func() { _ = fc.Close() })
	if err := fc.Set(t.Context(), srv.KeyPrefix()+"k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := redistest.Client(t, srv).Get(t.Context(), srv.KeyPrefix()+"k").Result(); err != nil || v != "v" {
		t.Fatalf("the master holds %q (%v), want the value set through the sentinel", v, err)
	}
}
