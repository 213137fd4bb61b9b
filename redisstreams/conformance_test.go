package redisstreams_test

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/pubsubtest"
	"github.com/go-relay/relay/redisstreams"
)

// harnessBulkMax is the proto-max-bulk-len of the suite's server, the
// smallest Redis accepts, so that the payload-limit case sends 1 MiB rather
// than 512.
const harnessBulkMax = 1 << 20

// harness serves the suite from one redis-server per top-level test, with the
// append-only file on so that Restart keeps the data.
func harness(t *testing.T) pubsubtest.Harness {
	srv := redistest.Start(t, redistest.Config{AppendOnly: true})
	rc := redistest.Client(t, srv)
	// The suite's topics carry no key prefix: on a server at REDIS_URL they
	// are removed by their own beginnings, and so are their delayed
	// messages' sorted sets ("{topic}>delayed").
	redistest.RemoveNewKeys(t, srv, "relay_test_", "relay_wm_", "{relay_test_", "{relay_wm_")
	setLimit := func(t *testing.T) {
		if err := rc.ConfigSet(context.Background(), "proto-max-bulk-len", strconv.Itoa(harnessBulkMax)).Err(); err != nil {
			t.Fatalf("CONFIG SET proto-max-bulk-len: %v", err)
		}
	}
	maxPayload := harnessBulkMax
	if os.Getenv("REDIS_URL") == "" {
		setLimit(t)
	} else {
		// A server the tests did not start keeps its configuration: the
		// over-limit case runs only when its limit is small enough to send.
		maxPayload = externalBulkMax(t, rc)
	}
	h := suiteHarness(rc, pubsubtest.Capabilities{Persistent: true, Ordered: true, MaxPayload: maxPayload,
		Delayed: true, RetryAfter: true, Telemetry: true})
	h.Restart = func(t *testing.T) {
		redistest.RequireControl(t)
		if err := srv.Restart(); err != nil {
			t.Fatalf("restart redis-server: %v", err)
		}
		setLimit(t) // CONFIG SET does not survive a restart
	}
	return h
}

// suiteOptions are the options the suite's Config asks for.
func suiteOptions(cfg pubsubtest.Config) []redisstreams.Option {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := []redisstreams.Option{
		redisstreams.WithGroup(cfg.Group),
		redisstreams.WithMaxDeliver(cfg.MaxDeliver),
		redisstreams.WithBackoff(cfg.MinBackoff, cfg.MaxBackoff),
		redisstreams.WithConcurrency(cfg.Concurrency),
		redisstreams.WithClaimTimeout(cfg.AckWait),
		redisstreams.WithBlockTimeout(200 * time.Millisecond),
		redisstreams.WithLogger(logger),
	}
	if cfg.TracerProvider != nil {
		o = append(o, redisstreams.WithTracerProvider(cfg.TracerProvider))
	}
	if cfg.MeterProvider != nil {
		o = append(o, redisstreams.WithMeterProvider(cfg.MeterProvider))
	}
	if cfg.Propagators != nil {
		o = append(o, redisstreams.WithPropagators(cfg.Propagators))
	}
	if cfg.DeadLetterTopic != nil {
		o = append(o, redisstreams.WithDeadLetterTopic(cfg.DeadLetterTopic))
	}
	return o
}

// suiteHarness is the harness of the suite over rc, a client of one server
// or of a cluster, without Restart.
func suiteHarness(rc redis.UniversalClient, caps pubsubtest.Capabilities) pubsubtest.Harness {
	return pubsubtest.Harness{
		NewBroker: func(t *testing.T, cfg pubsubtest.Config) (relay.Broker, error) {
			return redisstreams.NewBroker(rc, suiteOptions(cfg)...)
		},
		NewPublisher: func(t *testing.T, cfg pubsubtest.Config) (message.Publisher, error) {
			return redisstreams.NewPublisher(rc, suiteOptions(cfg)...)
		},
		NewSubscriber: func(t *testing.T, cfg pubsubtest.Config) (message.Subscriber, error) {
			return redisstreams.NewSubscriber(rc, suiteOptions(cfg)...)
		},
		NewInspector: func(t *testing.T) relay.Inspector {
			in, err := redisstreams.NewInspector(rc, redisstreams.WithLogger(slog.New(slog.DiscardHandler)))
			if err != nil {
				t.Fatalf("NewInspector: %v", err)
			}
			return in
		},
		Capabilities: caps,
	}
}

// externalBulkMax returns the proto-max-bulk-len of an external server when
// it is at most 8 MiB, and 0 (no over-limit case) when it is larger, as the
// default 512 MiB is, or cannot be read.
func externalBulkMax(t *testing.T, rc redis.UniversalClient) int {
	v, err := rc.ConfigGet(context.Background(), "proto-max-bulk-len").Result()
	if err != nil {
		t.Logf("CONFIG GET proto-max-bulk-len: %v; the over-limit case does not run", err)
		return 0
	}
	n, err := strconv.Atoi(v["proto-max-bulk-len"])
	if err != nil || n > 8<<20 {
		return 0
	}
	return n
}

func TestConformanceBroker(t *testing.T) { pubsubtest.TestBroker(t, harness(t)) }

func TestConformanceWatermill(t *testing.T) { pubsubtest.TestWatermill(t, harness(t)) }

func TestConformanceInspector(t *testing.T) { pubsubtest.TestInspector(t, harness(t)) }

func TestConformanceTelemetry(t *testing.T) { pubsubtest.TestTelemetry(t, harness(t)) }
