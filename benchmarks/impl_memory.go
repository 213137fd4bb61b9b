package benchmarks

import (
	"context"
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/go-relay/relay/memory"
)

func memoryImpls() []Impl {
	return []Impl{
		{System: "memory", Face: FaceBytes, Open: openMemoryBytes},
		{System: "memory", Face: FaceWatermill, Open: openMemoryWatermill},
		{System: "memory", Face: FacePeer, Peer: "watermill gochannel", Open: openGoChannel},
	}
}

// memoryHub returns a hub that holds what a publish-only run stores.
func memoryHub(cfg SessionConfig) (*memory.Hub, error) {
	return memory.NewHub(memory.WithCapacity(max(memory.DefaultCapacity, cfg.Retain)))
}

type memoryBytes struct {
	topic string
	b     *memory.Broker
}

func openMemoryBytes(_ context.Context, _ *Env, cfg SessionConfig) (Session, error) {
	hub, err := memoryHub(cfg)
	if err != nil {
		return nil, err
	}
	opts := []memory.Option{memory.WithHub(hub), memory.WithGroup(Group)}
	if t := cfg.Telemetry; t != nil {
		opts = append(opts, memory.WithTracerProvider(t.Tracer), memory.WithMeterProvider(t.Meter))
	}
	b, err := memory.NewBroker(opts...)
	if err != nil {
		return nil, err
	}
	return &memoryBytes{topic: cfg.Topic, b: b}, nil
}

// Publish implements [Session].
func (s *memoryBytes) Publish(ctx context.Context, p []byte) error {
	return s.b.Publish(ctx, s.topic, p)
}

// PublishAt implements [DelayedSession].
func (s *memoryBytes) PublishAt(ctx context.Context, p []byte, at time.Time) error {
	return s.b.PublishAt(ctx, s.topic, p, at)
}

// Consume implements [Session].
func (s *memoryBytes) Consume(handle func([]byte)) error {
	return s.b.Subscribe(s.topic, func(p []byte) error { handle(p); return nil })
}

// Settled implements [Session].
func (s *memoryBytes) Settled(context.Context) error { return nil }

// Close implements [Session].
func (s *memoryBytes) Close() error { return s.b.Close() }

func openMemoryWatermill(_ context.Context, _ *Env, cfg SessionConfig) (Session, error) {
	hub, err := memoryHub(cfg)
	if err != nil {
		return nil, err
	}
	pub, err := memory.NewPublisher(hub)
	if err != nil {
		return nil, err
	}
	sub, err := memory.NewSubscriber(hub, memory.WithGroup(Group))
	if err != nil {
		return nil, errors.Join(err, pub.Close())
	}
	return newWMSession(cfg.Topic, pub, sub), nil
}

// openGoChannel opens Watermill's gochannel. It has no consumer groups (every
// subscriber gets every message), which is the same as one group here. A
// publish-only run makes it persistent, so that it stores messages as
// relay's hub does instead of dropping them for lack of subscribers.
func openGoChannel(_ context.Context, _ *Env, cfg SessionConfig) (Session, error) {
	gc := gochannel.NewGoChannel(gochannel.Config{Persistent: cfg.Retain > 0}, nil)
	return newWMSession(cfg.Topic, gc, gc), nil
}
