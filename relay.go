// Package relay is the contract shared by relay's message brokers: the [Broker]
// interface, the [Handler] type, the sentinel errors and the portable topic rule
// ([ValidateTopic]).
//
// The backends live in sub-packages: memory (in-process, the embedded default),
// natsjs (NATS JetStream) and redisstreams (Redis Streams). Each offers two faces
// over one engine: the byte-handler API of [Broker], and Watermill's
// message.Publisher and message.Subscriber. The retrier package adds attempts and
// dead letters to brokers that lack them, and pubsubtest is the conformance suite
// every backend passes.
//
// # Delivery semantics
//
// Delivery is at least once. A message is removed from the broker only after its
// handler returned nil (byte face) or msg.Ack() was called (Watermill face).
// A failed delivery (an error, a panic, a Nack) is redelivered after a backoff;
// after the configured number of deliveries (max deliver, 3 by default) the message
// is written to the dead-letter topic (by default the topic plus ".dead") before it
// is acknowledged on the source, so a crash between the two can duplicate it but
// never lose it. A handler error that wraps [ErrPermanent] skips the remaining
// attempts. Handlers must therefore be idempotent.
//
// # Dead letters
//
// A dead letter keeps the payload byte for byte. On the Watermill face its
// metadata also holds the source topic ([MetadataSourceTopic]), the source
// message id ([MetadataSourceID]), the number of deliveries made
// ([MetadataAttempts]) and the last error ([MetadataReason]).
//
// # Delayed delivery and retry-after
//
// Every relay backend's Broker is a [DelayedPublisher]: PublishAt stores a
// message now, durably, and delivers it to every group no earlier than its due
// time. On the Watermill face the same is asked with Watermill's own metadata
// key [MetadataDelayedUntil], so that Watermill's delay.Message and
// delay.NewPublisher work unchanged. A due time further ahead than the
// backend's WithMaxDelay ([DefaultMaxDelay]) or a malformed value is refused
// with [ErrInvalidDelay] and nothing is stored.
//
// A handler that knows when a retry may succeed (a rate limit, a Retry-After
// header) returns [RetryAfter](err, d): the redelivery waits the larger of
// the backoff and d, capped by the backend's WithMaxRetryAfter
// ([DefaultMaxRetryAfter]); it still counts as an attempt.
//
// # Topics
//
// Every backend accepts the same topics, those that [ValidateTopic] accepts, so
// that a program can move from one backend to another without renaming anything.
package relay

import "context"

// Handler processes one message payload. Returning nil acknowledges the message;
// returning an error (or panicking) makes the broker redeliver it later, and an
// error that wraps [ErrPermanent] sends it to the dead-letter topic at once.
//
// The payload slice is owned by the handler for the duration of the call only;
// copy it to keep it. Handler is an alias so that any func([]byte) error fits.
type Handler = func(payload []byte) error

// Broker is the byte-handler face of a backend. Users hold a Broker; backend
// authors implement it, and pubsubtest checks their implementation.
//
// All methods are safe for concurrent use.
type Broker interface {
	// Publish stores payload on topic and returns nil only once the message is
	// durable on the backend (for a persistent backend: acknowledged by the
	// server). It blocks at most until ctx is done, then returns an error that
	// wraps ctx.Err(). It returns an error wrapping [ErrInvalidTopic] for a topic
	// that [ValidateTopic] rejects, [ErrPayloadTooLarge] for a payload over the
	// backend's limit (before anything is sent), [ErrNilContext] for a nil ctx
	// (before anything is sent) and [ErrClosed] after Close. A nil
	// or empty payload is valid and is delivered as an empty payload. Publish
	// does not keep payload after it returns.
	//
	// A transient backend failure is returned as an error; an implementation may
	// retry internally only within ctx.
	Publish(ctx context.Context, topic string, payload []byte) error

	// Subscribe starts delivering the messages of topic to handler and returns
	// once the subscription is registered on the backend (for a persistent
	// backend: the consumer group exists), so that everything published after it
	// returns, and everything still stored from before, is delivered. Delivery
	// continues in the background until Close. Subscriptions of one Broker form one
	// consumer group: several Subscribe calls on the same topic compete for its
	// messages.
	//
	// It returns an error wrapping [ErrInvalidTopic], [ErrNilHandler] or
	// [ErrClosed], or the backend's error when the subscription cannot be set up.
	Subscribe(topic string, handler Handler) error

	// Close stops fetching new messages, waits for the handlers that are running
	// to return, acknowledges those that succeeded and leaves the others pending
	// for redelivery. It returns once no goroutine of the broker is left. Close is
	// idempotent and safe to call concurrently; calls after the first return nil.
	// Close does not close a client or connection that the caller passed in.
	Close() error
}

// Shutdowner is implemented by brokers and Watermill subscribers whose Close
// can be bounded: every relay backend's Broker and Subscriber implements it,
// and pubsubtest asks a third-party backend whether it does.
//
// Shutdown is Close that stops waiting for the running handlers once ctx is
// done and then returns an error wrapping ctx.Err(): everything else happens
// as with Close, at once (Publish and Subscribe return [ErrClosed] from the
// first call on). A delivery whose handler still runs then is not lost: each
// backend documents whether it stays in flight until the handler returns or
// is redelivered after the ack wait. A later Close or Shutdown waits again.
// A nil ctx returns an error wrapping [ErrNilContext] and closes nothing.
type Shutdowner interface {
	Shutdown(ctx context.Context) error
}
