package relay_test

// The Go code of README.md lives here, one function (or the import block) per
// README code block, so that the compiler and `go vet` check it and
// readme_test.go runs it. TestREADMESnippetsAreThisFile fails when a README
// block and its function here differ by one byte: edit here, then copy the
// function into README.md.

import (
	"context"
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/memory"
	"github.com/go-relay/relay/natsjs"
	"github.com/go-relay/relay/redisstreams"
)

// byteFace bills every order published on "orders.placed" until ctx ends.
func byteFace(ctx context.Context) error {
	b, err := memory.NewBroker(memory.WithGroup("billing")) // or natsjs.NewBroker(js, …), redisstreams.NewBroker(client, …)
	if err != nil {
		return err
	}
	defer b.Close() // waits for running handlers; never closes a client you passed in

	err = b.Subscribe("orders.placed", func(payload []byte) error {
		if err := bill(payload); err != nil {
			return err // redelivered after a backoff; after 3 deliveries it goes to "orders.placed.dead"
		}
		return nil // acknowledged: done for this group (the stream keeps it until its retention limits drop it)
	})
	if err != nil {
		return err
	}
	if err := b.Publish(ctx, "orders.placed", []byte(`{"id":42}`)); err != nil { // nil means stored durably
		return err
	}
	<-ctx.Done() // serve until shutdown
	return nil
}

// billOrders publishes an order and runs a Watermill router that bills every
// order of "orders.placed" until ctx ends. It is the same on every backend.
func billOrders(ctx context.Context, pub message.Publisher, sub message.Subscriber, logger watermill.LoggerAdapter) error {
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		return err
	}
	// NackReason hands a handler's error to relay, so the dead letter says why and relay.Permanent errors skip retries.
	router.AddMiddleware(relay.NackReason, middleware.Recoverer)
	router.AddConsumerHandler("bill", "orders.placed", sub, func(msg *message.Message) error {
		return bill(msg.Payload) // an error Nacks: native redelivery with backoff, dead letter after max deliver
	})
	order := message.NewMessage(watermill.NewUUID(), []byte(`{"id":42}`))
	if err := pub.Publish("orders.placed", order); err != nil { // nil means stored durably
		return err
	}
	return router.Run(ctx) // returns nil once ctx ended and running handlers returned
}

// watermillMemory runs billOrders in-process: the hub is the broker.
func watermillMemory(ctx context.Context, logger watermill.LoggerAdapter) error {
	hub, err := memory.NewHub() // publishers and subscribers meet when they share a hub
	if err != nil {
		return err
	}
	pub, err := memory.NewPublisher(hub)
	if err != nil {
		return err
	}
	defer pub.Close()
	sub, err := memory.NewSubscriber(hub, memory.WithGroup("billing"), memory.WithConcurrency(8))
	if err != nil {
		return err
	}
	defer sub.Close() // waits for running handlers; unfinished messages stay on the hub
	return billOrders(ctx, pub, sub, logger)
}

// watermillNATS runs billOrders on NATS JetStream at url.
func watermillNATS(ctx context.Context, url string, logger watermill.LoggerAdapter) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close() // you own the connection: deferred first, it closes after the publisher and subscriber
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	pub, err := natsjs.NewPublisher(js)
	if err != nil {
		return err
	}
	defer pub.Close()
	sub, err := natsjs.NewSubscriber(js, natsjs.WithGroup("billing"), natsjs.WithConcurrency(8))
	if err != nil {
		return err
	}
	defer sub.Close()
	return billOrders(ctx, pub, sub, logger)
}

// watermillRedis runs billOrders on Redis Streams at addr ("host:port").
func watermillRedis(ctx context.Context, addr string, logger watermill.LoggerAdapter) error {
	// Any redis.UniversalClient works: single, cluster, sentinel, ring. You own it.
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	pub, err := redisstreams.NewPublisher(client)
	if err != nil {
		return err
	}
	defer pub.Close()
	sub, err := redisstreams.NewSubscriber(client, redisstreams.WithGroup("billing"), redisstreams.WithConcurrency(8))
	if err != nil {
		return err
	}
	defer sub.Close()
	return billOrders(ctx, pub, sub, logger)
}

// startNATS starts a NATS server with JetStream inside this process, storing
// in dir. Connect to ns.ClientURL(); stop it with ns.Shutdown().
func startNATS(dir string) (*server.Server, error) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir})
	if err != nil {
		return nil, err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("nats-server did not start")
	}
	return ns, nil
}

// natsCluster is a broker whose streams and consumers are replicated on three
// servers of a JetStream cluster.
func natsCluster(urls string) (*natsjs.Broker, *nats.Conn, error) {
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1)) // "nats://a:4222,nats://b:4222,nats://c:4222"
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	b, err := natsjs.NewBroker(js,
		natsjs.WithStreamConfig(func(c *jetstream.StreamConfig) { c.Replicas = 3 }),
		natsjs.WithConsumerConfig(func(c *jetstream.ConsumerConfig) { c.Replicas = 3 }),
	)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return b, nc, nil // close b, then nc
}

// redisCluster is a broker on a Redis Cluster whose Publish returns once a
// replica of the master holds the message, or fails with
// redisstreams.ErrNotReplicated after 500 ms.
func redisCluster(addrs []string) (*redisstreams.Broker, *redis.ClusterClient, error) {
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	b, err := redisstreams.NewBroker(rc, redisstreams.WithReplicaAcks(1, 500*time.Millisecond))
	if err != nil {
		rc.Close()
		return nil, nil, err
	}
	return b, rc, nil // close b, then rc
}
