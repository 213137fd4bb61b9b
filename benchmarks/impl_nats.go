package benchmarks

import (
	"context"
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay/natsjs"
)

func natsImpls() []Impl {
	return []Impl{
		{System: "nats", Face: FaceBytes, Open: openNATSBytes},
		{System: "nats", Face: FaceWatermill, Open: openNATSWatermill},
		{System: "nats", Face: FacePeer, Peer: "watermill-nats/v2 pkg/jetstream", Open: openNATSPeer},
		{System: "nats", Face: FaceRaw, Peer: "nats.go jetstream", Open: openNATSRaw(false)},
		{System: "nats", Face: FaceRawWire, Peer: "nats.go jetstream", Open: openNATSRaw(true)},
	}
}

// natsConns is a publishing, a consuming and an admin connection (the
// peer's Close closes the connection it was given).
type natsConns struct {
	pubNC, subNC, adminNC *nats.Conn
	pub, sub, admin       jetstream.JetStream
}

func dialNATS(env *Env) (*natsConns, error) {
	url, err := env.NATS()
	if err != nil {
		return nil, err
	}
	c := &natsConns{}
	if c.pubNC, err = nats.Connect(url); err != nil {
		return nil, err
	}
	if c.subNC, err = nats.Connect(url); err != nil {
		c.pubNC.Close()
		return nil, err
	}
	if c.adminNC, err = nats.Connect(url); err != nil {
		c.pubNC.Close()
		c.subNC.Close()
		return nil, err
	}
	c.pub, _ = jetstream.New(c.pubNC) // fails only for a nil connection
	c.sub, _ = jetstream.New(c.subNC)
	c.admin, _ = jetstream.New(c.adminNC)
	return c, nil
}

// close deletes stream (if it exists) and closes the connections.
func (c *natsConns) close(stream string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.admin.DeleteStream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		err = nil
	}
	c.pubNC.Close()
	c.subNC.Close()
	c.adminNC.Close()
	return err
}

// settled waits until consumer on stream has nothing pending or unacked.
func (c *natsConns) settled(stream, consumer string) func(context.Context) error {
	return func(ctx context.Context) error {
		return poll(ctx, "nats consumer info", func(ctx context.Context) (bool, error) {
			cons, err := c.admin.Consumer(ctx, stream, consumer)
			if err != nil {
				return false, err
			}
			info, err := cons.Info(ctx)
			if err != nil {
				return false, err
			}
			return info.NumAckPending == 0 && info.NumPending == 0, nil
		})
	}
}

// createStream creates the stream the way watermill-nats names it (stream =
// topic), file storage as everywhere here.
func (c *natsConns) createStream(ctx context.Context, topic string) error {
	_, err := c.admin.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: topic, Subjects: []string{topic},
		Storage: jetstream.FileStorage})
	return err
}

type natsBytes struct {
	topic    string
	c        *natsConns
	pub, sub *natsjs.Broker
}

func openNATSBytes(_ context.Context, env *Env, cfg SessionConfig) (Session, error) {
	c, err := dialNATS(env)
	if err != nil {
		return nil, err
	}
	var tel []natsjs.Option
	if t := cfg.Telemetry; t != nil {
		tel = []natsjs.Option{natsjs.WithTracerProvider(t.Tracer), natsjs.WithMeterProvider(t.Meter)}
	}
	pub, err := natsjs.NewBroker(c.pub, tel...)
	if err != nil {
		return nil, errors.Join(err, c.close(natsjs.StreamName(cfg.Topic)))
	}
	sub, err := natsjs.NewBroker(c.sub, append(tel, natsjs.WithGroup(Group))...)
	if err != nil {
		return nil, errors.Join(err, c.close(natsjs.StreamName(cfg.Topic)))
	}
	return &natsBytes{topic: cfg.Topic, c: c, pub: pub, sub: sub}, nil
}

// Publish implements [Session].
func (s *natsBytes) Publish(ctx context.Context, p []byte) error {
	return s.pub.Publish(ctx, s.topic, p)
}

// PublishAt implements [DelayedSession].
func (s *natsBytes) PublishAt(ctx context.Context, p []byte, at time.Time) error {
	return s.pub.PublishAt(ctx, s.topic, p, at)
}

// Consume implements [Session].
func (s *natsBytes) Consume(handle func([]byte)) error {
	return s.sub.Subscribe(s.topic, func(p []byte) error { handle(p); return nil })
}

// Settled implements [Session].
func (s *natsBytes) Settled(ctx context.Context) error {
	return s.c.settled(natsjs.StreamName(s.topic), natsjs.ConsumerName(Group))(ctx)
}

// Close implements [Session].
func (s *natsBytes) Close() error {
	return errors.Join(s.sub.Close(), s.pub.Close(), s.c.close(natsjs.StreamName(s.topic)))
}

func openNATSWatermill(_ context.Context, env *Env, cfg SessionConfig) (Session, error) {
	c, err := dialNATS(env)
	if err != nil {
		return nil, err
	}
	stream := natsjs.StreamName(cfg.Topic)
	pub, err := natsjs.NewPublisher(c.pub)
	if err != nil {
		return nil, errors.Join(err, c.close(stream))
	}
	sub, err := natsjs.NewSubscriber(c.sub, natsjs.WithGroup(Group))
	if err != nil {
		return nil, errors.Join(err, c.close(stream))
	}
	s := newWMSession(cfg.Topic, pub, sub)
	s.settled = c.settled(stream, natsjs.ConsumerName(Group))
	s.cleanup = append(s.cleanup, func() error { return c.close(stream) })
	return s, nil
}

// openNATSPeer opens watermill-nats' JetStream publisher and subscriber in a
// consumer group (GroupedConsumer). watermill-nats creates no stream when
// publishing, so the session creates it first, as an application would. The
// subscriber acks without waiting for the server's confirmation
// (AckAsync), as relay's natsjs does; its default is a DoubleAck round trip.
func openNATSPeer(ctx context.Context, env *Env, cfg SessionConfig) (Session, error) {
	c, err := dialNATS(env)
	if err != nil {
		return nil, err
	}
	if err := c.createStream(ctx, cfg.Topic); err != nil {
		return nil, errors.Join(err, c.close(cfg.Topic))
	}
	pub, err := wmjs.NewPublisher(wmjs.PublisherConfig{Conn: c.pubNC, Logger: watermill.NopLogger{}})
	if err != nil {
		return nil, errors.Join(err, c.close(cfg.Topic))
	}
	sub, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{
		Conn:                c.subNC,
		Logger:              watermill.NopLogger{}, // its default logs every message at Info
		ResourceInitializer: wmjs.GroupedConsumer(Group),
		AckAsync:            true,
	})
	if err != nil {
		return nil, errors.Join(err, c.close(cfg.Topic))
	}
	s := newWMSession(cfg.Topic, pub, sub)
	s.settled = c.settled(cfg.Topic, "watermill__"+Group+"__"+cfg.Topic)
	s.cleanup = append(s.cleanup, func() error { return c.close(cfg.Topic) })
	return s, nil
}

// natsRaw is the floor: Publish (waiting for the PubAck), PublishAsync for a
// batch, and Consume + Ack on a durable consumer.
type natsRaw struct {
	topic string
	c     *natsConns
	cc    jetstream.ConsumeContext
	// wire sends each message with the headers relay's wire format puts on
	// it (see [natsRaw.msg]), so that relay ÷ raw-wire leaves out what the
	// format costs the server and the client.
	wire bool
}

// openNATSRaw opens the raw client; wire selects the raw-wire face.
func openNATSRaw(wire bool) func(ctx context.Context, env *Env, cfg SessionConfig) (Session, error) {
	return func(ctx context.Context, env *Env, cfg SessionConfig) (Session, error) {
		c, err := dialNATS(env)
		if err != nil {
			return nil, err
		}
		if err := c.createStream(ctx, cfg.Topic); err != nil {
			return nil, errors.Join(err, c.close(cfg.Topic))
		}
		return &natsRaw{topic: cfg.Topic, c: c, wire: wire}, nil
	}
}

// msg is the message of payload p: bare, or with relay's headers, a fresh
// UUID in both the one watermill-nats reads and Nats-Msg-Id, by which the
// stream drops a retried publish (natsjs' encode of a message without
// metadata).
func (s *natsRaw) msg(p []byte) *nats.Msg {
	m := &nats.Msg{Subject: s.topic, Data: p}
	if s.wire {
		id := []string{watermill.NewUUID()}
		m.Header = nats.Header{natsjs.UUIDHeader: id, nats.MsgIdHdr: id}
	}
	return m
}

// Publish implements [Session].
func (s *natsRaw) Publish(ctx context.Context, p []byte) error {
	_, err := s.c.pub.PublishMsg(ctx, s.msg(p))
	return err
}

// PublishBatch implements [BatchPublisher].
func (s *natsRaw) PublishBatch(ctx context.Context, payloads [][]byte) error {
	futures := make([]jetstream.PubAckFuture, len(payloads))
	for i, p := range payloads {
		f, err := s.c.pub.PublishMsgAsync(s.msg(p))
		if err != nil {
			return err
		}
		futures[i] = f
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Consume implements [Session].
func (s *natsRaw) Consume(handle func([]byte)) error {
	cons, err := s.c.sub.CreateOrUpdateConsumer(context.Background(), s.topic, jetstream.ConsumerConfig{
		Durable: Group, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		return err
	}
	s.cc, err = cons.Consume(func(m jetstream.Msg) {
		handle(m.Data())
		_ = m.Ack() // as nats.go's own examples: a lost ack is redelivered
	})
	return err
}

// Settled implements [Session].
func (s *natsRaw) Settled(ctx context.Context) error { return s.c.settled(s.topic, Group)(ctx) }

// Close implements [Session].
func (s *natsRaw) Close() error {
	if s.cc != nil {
		s.cc.Stop()
		<-s.cc.Closed()
	}
	return s.c.close(s.topic)
}
