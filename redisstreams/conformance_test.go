package redisstreams_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/redistest"
	"github.com/go-relay/relay/pubsubtest"
	"github.com/go-relay/relay/redisstreams"
)

// harness serves the suite from one redis-server per top-level test, with the
// append-only file on so that Restart keeps the data.
func harness(t *testing.T) pubsubtest.Harness {
	srv := redistest.Start(t, redistest.Config{AppendOnly: true})
	rc := redistest.Client(t, srv)
	opts := func(cfg pubsubtest.Config) []redisstreams.Option {
		return []redisstreams.Option{
			redisstreams.WithGroup(cfg.Group),
			redisstreams.WithMaxDeliver(cfg.MaxDeliver),
			redisstreams.WithBackoff(cfg.MinBackoff, cfg.MaxBackoff),
			redisstreams.WithConcurrency(cfg.Concurrency),
			redisstreams.WithClaimTimeout(cfg.AckWait),
			redisstreams.WithBlockTimeout(200 * time.Millisecond),
			redisstreams.WithLogger(slog.New(slog.DiscardHandler)),
		}
	}
	return pubsubtest.Harness{
		NewBroker: func(t *testing.T, cfg pubsubtest.Config) (relay.Broker, error) {
			return redisstreams.NewBroker(rc, opts(cfg)...)
		},
		NewPublisher: func(t *testing.T, cfg pubsubtest.Config) (message.Publisher, error) {
			return redisstreams.NewPublisher(rc, opts(cfg)...)
		},
		NewSubscriber: func(t *testing.T, cfg pubsubtest.Config) (message.Subscriber, error) {
			return redisstreams.NewSubscriber(rc, opts(cfg)...)
		},
		Restart: func(t *testing.T) {
			if err := srv.Restart(); err != nil {
				t.Fatalf("restart redis-server: %v", err)
			}
		},
		Capabilities: pubsubtest.Capabilities{Persistent: true, Ordered: true},
	}
}

func TestConformanceBroker(t *testing.T) { pubsubtest.TestBroker(t, harness(t)) }

func TestConformanceWatermill(t *testing.T) { pubsubtest.TestWatermill(t, harness(t)) }
