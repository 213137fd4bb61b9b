package redisstreams_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/faulttest"
	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/pubsubtest"
	"github.com/go-relay/relay/redisstreams"
)

// The fault matrix of internal/testkit/faulttest on a redis-server child process
// with the append-only file fsynced on every write. Budgets are in each Run
// function's doc; RELAY_FAULTS=full runs the full counts.

// faultBroker connects to the server at addr (or a proxy in front of it)
// with go-redis' default client options; the ack wait of the cases is the
// claim timeout.
func faultBroker(t testing.TB, addr string, cfg pubsubtest.Config) (relay.Broker, error) {
	rc := redis.NewClient(redistest.Options(addr)) // REDIS_URL's database, if set
	t.Cleanup(func() {
		if err := rc.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
			t.Error(fmt.Errorf("close redis client: %w", err))
		}
	})
	return redisstreams.NewBroker(rc,
		redisstreams.WithGroup(cfg.Group),
		redisstreams.WithMaxDeliver(cfg.MaxDeliver),
		redisstreams.WithBackoff(cfg.MinBackoff, cfg.MaxBackoff),
		redisstreams.WithConcurrency(cfg.Concurrency),
		redisstreams.WithClaimTimeout(cfg.AckWait),
		redisstreams.WithBlockTimeout(200*time.Millisecond),
		redisstreams.WithLogger(faulttest.Logger()),
	)
}

// faultServer is a redis-server as faulttest controls it: Stop is a crash
// (SIGKILL).
type faultServer struct{ s *redistest.Server }

func (f faultServer) Addr() string { return f.s.Addr() }
func (f faultServer) Stop() error  { return f.s.Kill() }
func (f faultServer) Start() error { return f.s.Start() }

func faultBackend(t *testing.T) faulttest.Backend {
	srv := redistest.Start(t, redistest.Config{AppendOnly: true})
	return faulttest.Backend{
		Name:      "redisstreams",
		Server:    faultServer{srv},
		NewBroker: faultBroker,
		Helper:    true,
		// The key prefix, so that the server's cleanup deletes the
		// case's keys from a server at REDIS_URL.
		Topic: func(_ testing.TB, name string) string { return srv.KeyPrefix() + name },
	}
}

func TestFaultHelperProcess(t *testing.T) { faulttest.HelperProcess(t, faultBroker) }

func TestFaultHandlerFailures(t *testing.T) { faulttest.RunHandlerFailures(t, faultBackend(t)) }
func TestFaultConsumerCrash(t *testing.T)   { faulttest.RunConsumerCrash(t, faultBackend(t)) }

// A delayed message outlives the process that scheduled it: its entry waits
// in the topic's sorted set, and the mover of the consumer's process moves it.
func TestFaultDelayedPublisherCrash(t *testing.T) {
	faulttest.RunDelayedPublisherCrash(t, faultBackend(t))
}
func TestFaultBrokerRestart(t *testing.T) {
	redistest.RequireControl(t)
	faulttest.RunBrokerRestart(t, faultBackend(t))
}
func TestFaultNetworkCut(t *testing.T)       { faulttest.RunNetworkCut(t, faultBackend(t)) }
func TestFaultNetworkLatency(t *testing.T)   { faulttest.RunNetworkLatency(t, faultBackend(t)) }
func TestFaultNetworkBlackHole(t *testing.T) { faulttest.RunNetworkBlackHole(t, faultBackend(t)) }
func TestFaultGracefulShutdown(t *testing.T) { faulttest.RunGracefulShutdown(t, faultBackend(t)) }
