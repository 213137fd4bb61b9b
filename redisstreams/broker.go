package redisstreams

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

var (
	_ relay.Broker     = (*Broker)(nil)
	_ relay.Shutdowner = (*Broker)(nil)
	_ relay.Shutdowner = (*Subscriber)(nil)
)

// Broker is the byte-handler face of the Redis Streams backend: a
// [relay.Broker] whose subscriptions belong to one consumer group
// ([WithGroup]). Its methods are safe for concurrent use.
type Broker struct {
	e *engine
}

// NewBroker returns a Broker that uses client, which may be a single,
// cluster, sentinel-backed or ring client. It sends nothing to Redis until
// the first Publish or Subscribe. It returns an error wrapping
// [relay.ErrInvalidOption] when client is nil or an option is out of range.
// The caller keeps ownership of client: Close does not close it, and client
// must stay open until Close has returned.
func NewBroker(client redis.UniversalClient, opts ...Option) (*Broker, error) {
	e, err := newEngine(client, opts)
	if err != nil {
		return nil, err
	}
	return &Broker{e: e}, nil
}

// Publish appends payload to the stream named topic (XADD, trimmed as
// [WithMaxLen] says) with a new UUID and no metadata, and returns once Redis
// answered, which makes the entry as durable as the server's persistence
// settings. A nil payload is stored as an empty one. It returns an error
// wrapping [relay.ErrInvalidTopic] for an invalid topic,
// [relay.ErrPayloadTooLarge], before anything is sent, for a payload longer
// than the server's proto-max-bulk-len (see the package doc, Limits),
// [relay.ErrClosed] after Close, ctx.Err() when ctx is done before Redis
// answered, or the Redis error.
// A nil ctx returns an error wrapping [relay.ErrNilContext], and nothing is
// sent.
func (b *Broker) Publish(ctx context.Context, topic string, payload []byte) error {
	if ctx == nil {
		return fmt.Errorf("%s: publish %q: %w", pkg, topic, relay.ErrNilContext)
	}
	if err := relay.ValidateTopic(topic); err != nil {
		return fmt.Errorf("%s: publish %q: %w", pkg, topic, err)
	}
	msg := delivery.Message{UUID: watermill.NewUUID(), Payload: payload}
	if err := b.e.publish(ctx, nil, topic, msg); err != nil {
		return fmt.Errorf("%s: publish %q: %w", pkg, topic, err)
	}
	return nil
}

// Subscribe creates the consumer group on topic's stream unless it exists
// (starting at [WithStartID], by default everything stored), then delivers
// the stream's entries to handler in the background, up to
// [WithConcurrency] at once, until Close. It blocks only until the group
// exists. Several Subscribe calls on one topic compete for its entries, as
// consumers of the group.
//
// Each subscription keeps one XREADGROUP blocking: with a *redis.Client on a
// connection of its own, outside the client's pool; with other clients on a
// connection of the client's pool, which must then hold at least the number
// of subscriptions plus what else uses it at once (Subscribe logs a warning
// when the subscriptions reach PoolSize). See the package doc, Connections.
// It returns an error wrapping
// [relay.ErrInvalidTopic], [relay.ErrNilHandler] or [relay.ErrClosed], or the
// Redis error of creating the group.
func (b *Broker) Subscribe(topic string, handler relay.Handler) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return fmt.Errorf("%s: subscribe %q: %w", pkg, topic, err)
	}
	if handler == nil {
		return fmt.Errorf("%s: subscribe %q: %w", pkg, topic, relay.ErrNilHandler)
	}
	_, err := b.e.subscribe(topic, func(_ context.Context, d *delivery.Delivery) error {
		return delivery.Call(handler, d.Message.Payload)
	})
	if err != nil {
		return fmt.Errorf("%s: subscribe %q: %w", pkg, topic, err)
	}
	return nil
}

// Close is Shutdown(context.Background()): it waits for the running handlers
// without bound, so a handler that never returns makes it never return, and
// it must not be called from inside a handler (that handler would wait for
// itself). See [Broker.Shutdown]. It always returns nil.
func (b *Broker) Close() error { return b.Shutdown(context.Background()) }

// Shutdown stops reading (with a *redis.Client, a blocking XREADGROUP in
// progress ends at once; with other clients it ends within the block timeout,
// [WithBlockTimeout]), waits for the running handlers to return, acknowledges
// those that succeeded and leaves every other entry pending, for another
// consumer to claim after the claim timeout or for this consumer name to take
// back after a restart ([WithConsumer]). Entries read ahead that no handler
// saw are handed back to the group at once. It deletes the consumers of the
// broker that have nothing pending, lets publish calls in flight finish, and
// returns nil once no goroutine of the broker is left.
//
// Once the handlers have returned, what Shutdown sends (the hand back, the
// last try of the acks that failed or are still queued, the consumer
// deletion) takes at most a second in all; what is not acknowledged by then
// stays pending and is delivered again. Against a Redis that does not answer
// (hung, or cut off without the connection closing) Shutdown also waits for
// the command of each subscription in flight when it began (an ack, an idle
// refresh, a claim, a redelivery or the clean-up of idle consumers), which
// ends within 2 s: about 3 s in all. These bounds hold with a
// *redis.Client whatever its timeouts; with other clients each command is
// bounded by their ReadTimeout and WriteTimeout instead (go-redis applies
// context deadlines to the socket only with ContextTimeoutEnabled). A publish
// in flight is bounded by its own context and the client's timeouts. With
// [WithReplicaAcks], a move of due delayed entries in flight (bounded at 1 s
// otherwise) may also wait for its WAIT, up to the option's timeout.
//
// When ctx is done first, Shutdown stops waiting for the handlers still
// running and returns ctx.Err(), wrapped. Their entries stay pending and are
// no longer kept from the claim timeout: another consumer of the group claims
// them after it, even while the handlers run on, and what those handlers
// return is not acknowledged. Publish and Subscribe fail with
// [relay.ErrClosed] from the first call on. Shutdown is idempotent and safe
// for concurrent use, and does not close the client.
// A nil ctx returns an error wrapping [relay.ErrNilContext], and closes
// nothing.
func (b *Broker) Shutdown(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("%s: shutdown: %w", pkg, relay.ErrNilContext)
	}
	if err := b.e.shutdown(ctx); err != nil {
		return fmt.Errorf("%s: shutdown: %w", pkg, err)
	}
	return nil
}

// HandlesRetries reports true: the broker redelivers failed entries and
// writes dead letters itself, so the retrier package adds nothing.
func (b *Broker) HandlesRetries() bool { return true }
