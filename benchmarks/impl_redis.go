package benchmarks

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay/redisstreams"
)

// redisBlock is the XREADGROUP block time of every Redis consumer here:
// watermill-redisstream's default. It only matters when the stream is idle,
// and keeps Close short (go-redis cannot interrupt a blocking read).
const redisBlock = 100 * time.Millisecond

func redisImpls() []Impl {
	return []Impl{
		{System: "redis", Face: FaceBytes, Open: openRedisBytes},
		{System: "redis", Face: FaceWatermill, Open: openRedisWatermill},
		{System: "redis", Face: FacePeer, Peer: "watermill-redisstream", Open: openRedisPeer},
		{System: "redis", Face: FaceRaw, Peer: "go-redis v9", Open: openRedisRaw(false)},
		{System: "redis", Face: FaceRawWire, Peer: "go-redis v9", Open: openRedisRaw(true)},
	}
}

// redisClients returns a publishing, a consuming and an admin client (the
// peer's Close closes the client it was given), and the clean-up that deletes
// the topic's stream and closes all three.
func redisClients(env *Env, topic string) (pub, sub, admin *redis.Client, cleanup func() error, err error) {
	addr, err := env.Redis()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	pub = redis.NewClient(&redis.Options{Addr: addr})
	sub = redis.NewClient(&redis.Options{Addr: addr})
	admin = redis.NewClient(&redis.Options{Addr: addr})
	cleanup = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := admin.Del(ctx, topic).Err()
		for _, c := range []*redis.Client{pub, sub, admin} {
			if cerr := c.Close(); cerr != nil && !errors.Is(cerr, redis.ErrClosed) {
				err = errors.Join(err, cerr)
			}
		}
		return err
	}
	return pub, sub, admin, cleanup, nil
}

// redisSettled waits until the group has no pending entry on stream.
func redisSettled(c *redis.Client, stream string) func(context.Context) error {
	return func(ctx context.Context) error {
		return poll(ctx, "redis pending", func(ctx context.Context) (bool, error) {
			p, err := c.XPending(ctx, stream, Group).Result()
			if err != nil {
				return false, err
			}
			return p.Count == 0, nil
		})
	}
}

type redisBytes struct {
	topic    string
	pub, sub *redisstreams.Broker
	settled  func(context.Context) error
	cleanup  func() error
}

func openRedisBytes(_ context.Context, env *Env, cfg SessionConfig) (Session, error) {
	pc, sc, ac, cleanup, err := redisClients(env, cfg.Topic)
	if err != nil {
		return nil, err
	}
	var tel []redisstreams.Option
	if t := cfg.Telemetry; t != nil {
		tel = []redisstreams.Option{redisstreams.WithTracerProvider(t.Tracer), redisstreams.WithMeterProvider(t.Meter)}
	}
	pub, err := redisstreams.NewBroker(pc, tel...)
	if err != nil {
		return nil, errors.Join(err, cleanup())
	}
	sub, err := redisstreams.NewBroker(sc, append(tel, redisstreams.WithGroup(Group), redisstreams.WithBlockTimeout(redisBlock))...)
	if err != nil {
		return nil, errors.Join(err, cleanup())
	}
	return &redisBytes{topic: cfg.Topic, pub: pub, sub: sub, settled: redisSettled(ac, cfg.Topic), cleanup: cleanup}, nil
}

// Publish implements [Session].
func (s *redisBytes) Publish(ctx context.Context, p []byte) error {
	return s.pub.Publish(ctx, s.topic, p)
}

// PublishAt implements [DelayedSession].
func (s *redisBytes) PublishAt(ctx context.Context, p []byte, at time.Time) error {
	return s.pub.PublishAt(ctx, s.topic, p, at)
}

// Consume implements [Session].
func (s *redisBytes) Consume(handle func([]byte)) error {
	return s.sub.Subscribe(s.topic, func(p []byte) error { handle(p); return nil })
}

// Settled implements [Session].
func (s *redisBytes) Settled(ctx context.Context) error { return s.settled(ctx) }

// Close implements [Session].
func (s *redisBytes) Close() error {
	return errors.Join(s.sub.Close(), s.pub.Close(), s.cleanup())
}

func openRedisWatermill(_ context.Context, env *Env, cfg SessionConfig) (Session, error) {
	pc, sc, ac, cleanup, err := redisClients(env, cfg.Topic)
	if err != nil {
		return nil, err
	}
	pub, err := redisstreams.NewPublisher(pc)
	if err != nil {
		return nil, errors.Join(err, cleanup())
	}
	sub, err := redisstreams.NewSubscriber(sc, redisstreams.WithGroup(Group), redisstreams.WithBlockTimeout(redisBlock))
	if err != nil {
		return nil, errors.Join(err, cleanup())
	}
	s := newWMSession(cfg.Topic, pub, sub)
	s.settled = redisSettled(ac, cfg.Topic)
	s.cleanup = append(s.cleanup, cleanup)
	return s, nil
}

func openRedisPeer(_ context.Context, env *Env, cfg SessionConfig) (Session, error) {
	pc, sc, ac, cleanup, err := redisClients(env, cfg.Topic)
	if err != nil {
		return nil, err
	}
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: pc}, watermill.NopLogger{})
	if err != nil {
		return nil, errors.Join(err, cleanup())
	}
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client:        sc,
		ConsumerGroup: Group,
		BlockTime:     redisBlock,
		// Without it the first read blocks forever on an empty stream and
		// leaks its goroutine at Close.
		DisableIndefiniteInitialBlock: true,
	}, watermill.NopLogger{})
	if err != nil {
		return nil, errors.Join(err, cleanup())
	}
	s := newWMSession(cfg.Topic, pub, sub)
	s.settled = redisSettled(ac, cfg.Topic)
	s.cleanup = append(s.cleanup, cleanup)
	return s, nil
}

// redisRaw is the floor: XADD (pipelined for a batch), and one consumer
// reading XREADGROUP COUNT 500 and acking each batch with one XACK.
type redisRaw struct {
	topic           string
	pub, sub, admin *redis.Client
	cleanup         func() error
	// wire writes each entry with the fields relay's wire format gives it
	// (see [redisRaw.xadd]), so that relay ÷ raw-wire leaves out what the
	// format costs Redis and the client.
	wire bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	err    error // of the read loop, read after wg.Wait
}

// openRedisRaw opens the raw client; wire selects the raw-wire face.
func openRedisRaw(wire bool) func(ctx context.Context, env *Env, cfg SessionConfig) (Session, error) {
	return func(_ context.Context, env *Env, cfg SessionConfig) (Session, error) {
		pc, sc, ac, cleanup, err := redisClients(env, cfg.Topic)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		return &redisRaw{topic: cfg.Topic, pub: pc, sub: sc, admin: ac, cleanup: cleanup, wire: wire,
			ctx: ctx, cancel: cancel}, nil
	}
}

// noMetadata is the metadata field of an entry without metadata, as
// redisstreams writes it: an empty msgpack value, boxed once.
var noMetadata any = []byte{}

// xadd is the XADD of payload p: the payload field alone, or the entry
// redisstreams' encode writes for a message without metadata (a fresh UUID,
// an empty metadata field, the payload, in that order) with the options its
// engine gives every XADD (MaxLen from WithMaxLen, 0 by default: no trimming).
func (s *redisRaw) xadd(p []byte) *redis.XAddArgs {
	if !s.wire {
		return &redis.XAddArgs{Stream: s.topic, Values: []any{"payload", p}}
	}
	return &redis.XAddArgs{Stream: s.topic, Approx: true,
		Values: []any{"_watermill_message_uuid", watermill.NewUUID(), "metadata", noMetadata, "payload", p}}
}

// Publish implements [Session].
func (s *redisRaw) Publish(ctx context.Context, p []byte) error {
	return s.pub.XAdd(ctx, s.xadd(p)).Err()
}

// PublishBatch implements [BatchPublisher].
func (s *redisRaw) PublishBatch(ctx context.Context, payloads [][]byte) error {
	_, err := s.pub.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for _, p := range payloads {
			pl.XAdd(ctx, s.xadd(p))
		}
		return nil
	})
	return err
}

// Consume implements [Session].
func (s *redisRaw) Consume(handle func([]byte)) error {
	err := s.sub.XGroupCreateMkStream(s.ctx, s.topic, Group, "0").Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return err
	}
	s.wg.Go(func() {
		ids := make([]string, 0, 500)
		for s.ctx.Err() == nil {
			streams, err := s.sub.XReadGroup(s.ctx, &redis.XReadGroupArgs{Group: Group, Consumer: "raw",
				Streams: []string{s.topic, ">"}, Count: 500, Block: redisBlock}).Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				if s.ctx.Err() == nil {
					s.err = err
				}
				return
			}
			ids = ids[:0]
			for _, m := range streams[0].Messages {
				p, _ := m.Values["payload"].(string)
				handle([]byte(p))
				ids = append(ids, m.ID)
			}
			if err := s.sub.XAck(s.ctx, s.topic, Group, ids...).Err(); err != nil {
				s.err = err
				return
			}
		}
	})
	return nil
}

// Settled implements [Session].
func (s *redisRaw) Settled(ctx context.Context) error {
	return redisSettled(s.admin, s.topic)(ctx)
}

// Close implements [Session].
func (s *redisRaw) Close() error {
	s.cancel()
	s.wg.Wait()
	return errors.Join(s.err, s.cleanup())
}
