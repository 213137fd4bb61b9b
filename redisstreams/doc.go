// Package redisstreams is relay's Redis Streams backend, over
// github.com/redis/go-redis/v9 and any [redis.UniversalClient] (single,
// cluster, sentinel, ring). [Broker] is the byte-handler face
// ([relay.Broker]); [Publisher] and [Subscriber] are Watermill's
// message.Publisher and message.Subscriber. All three take the same [Option]
// values and share one engine.
//
// # Delivery semantics
//
// Delivery is at least once. Publish is XADD and returns once Redis answered;
// the entry is then as durable as the server's persistence makes it (use the
// append-only file with fsync for no loss on a crash). Publish calls made at
// the same time on one value share round trips: one sends its XADD at once,
// the others queue (boundedly) for a writer that sends all that queued up
// meanwhile in one pipeline, and each returns with its own answer. Each Broker or
// Subscriber belongs to one consumer group ([WithGroup]); Subscribe creates
// the group with MKSTREAM, at [StartOldest] by default, so entries published
// before any subscriber existed are delivered. An existing group
// (BUSYGROUP) is joined as it is.
//
// Every subscription is a consumer of the group. It reads new entries with
// XREADGROUP ">" up to [WithPrefetch] ahead of its handlers, runs up to
// [WithConcurrency] handlers at once, in stream order, and acknowledges the
// successful ones with one XACK per batch of acks that finished meanwhile,
// without making the handlers wait for it. An entry is removed from the
// group's pending list only once its handler returned nil (or the Watermill
// message was acked). An XACK that fails (Redis down or restarting) is kept
// and sent again after a pause growing to 2 seconds until Redis answers; its
// entries meanwhile stay held (refreshed, and counted against
// [WithPrefetch]), so that a server restart does not deliver them again. At
// Close they get one more try, within the second that Close gives what it
// sends after the handlers are done, then stay pending and are delivered
// again (at least once). Against a Redis that does not answer, Close returns
// within a few seconds ([Broker.Shutdown] gives the bounds).
//
// While an entry waits for a handler or its handler runs, its consumer resets
// its idle time (XCLAIM JUSTID to itself) every third of the claim timeout
// ([WithClaimTimeout]), so that no other consumer claims it. The entries of a
// consumer that stopped refreshing (its process died, or Redis was cut off
// from it) are claimed by the others, which look every half claim timeout for
// entries idle longer than the claim timeout (XPENDING IDLE, then XCLAIM with
// the same MIN-IDLE, so that two claimers cannot both win).
//
// # Retries and dead letters
//
// The attempt number of a delivery is Redis' delivery counter of the pending
// entry: 1 for an entry read with ">", which costs no extra round trip; for a
// claimed entry, the counter after the claim (which increments it). A failed
// delivery (an error, a panic, a Nack) stays pending on its consumer, which
// keeps a timer for the backoff ([WithBackoff]); when it fires, the consumer
// claims the entry back to itself (XCLAIM, counting one more delivery, with a
// MIN-IDLE of about the backoff so that an entry another consumer took
// meanwhile is left to it), reads the counter (XPENDING, in the same
// pipeline) and delivers it again. A backoff longer than the claim timeout is
// cut short when another consumer claims the entry first.
//
// After [WithMaxDeliver] deliveries (3 by default), or at once for an error
// wrapping [relay.ErrPermanent], the entry is written to the dead-letter
// stream (by default the topic plus ".dead", [WithDeadLetterTopic]) with the
// same UUID and payload and metadata extended by [relay.MetadataSourceTopic],
// [relay.MetadataSourceID] (the entry id), [relay.MetadataAttempts] and
// [relay.MetadataReason]; only once that XADD succeeded is the entry
// acknowledged. When the XADD fails the entry stays pending and is tried
// again after the backoff: it is never lost. An entry that cannot be decoded
// (no payload field, corrupt metadata) goes to the dead-letter stream with the
// decode error as its reason. Deliveries cut short by Close count as
// deliveries in the counter, but are never dead-lettered for it: the handler
// runs once more and only a failure then leads to the dead-letter stream.
//
// A handler error made by [relay.RetryAfter] (on the Watermill face, a Nack
// behind [relay.NackReason]) sets that timer to the larger of the backoff and
// its wait, capped by [WithMaxRetryAfter] (1 hour by default); the delivery
// still counts, and a wait longer than the claim timeout is cut short in the
// same way.
//
// # Delayed delivery
//
// [Broker.PublishAt] ([relay.DelayedPublisher]) and a Watermill message with
// [relay.MetadataDelayedUntil] (so Watermill's delay.NewPublisher works on
// [Publisher]) add the entry to a sorted set of the topic (ZADD; score = due
// time in Unix milliseconds, rounded up; member = a new unique id and the
// entry's fields) and return once Redis answered: the entry is as durable as
// any, and survives a restart of the server (with persistence) and of every
// relay process. A due time at or before now is an ordinary XADD; one
// further ahead than [WithMaxDelay] (30 days by default), the zero time, or a
// metadata value that is not RFC 3339 is refused with [relay.ErrInvalidDelay]
// and nothing is stored.
//
// A mover (one goroutine per Broker, Publisher or Subscriber, from its first
// delayed publish or subscription until Close) serves the topics that value
// subscribed to and those it published delayed entries on. It runs one Lua
// script per topic (ZRANGEBYSCORE up to now, LIMIT 1000; an XADD, with
// [WithMaxLen]'s trim, and a ZREM per entry; then the next score): Redis runs
// a script atomically and writes its effects to the append-only file and the
// replicas as one transaction, so a crash keeps the entry in the set or in the
// stream, never both and never neither, and movers in several processes never
// move one entry twice. "Now" is the mover's clock: with clocks more than a
// few milliseconds apart, the publisher's due time is honoured to within
// their difference. The mover sleeps until the soonest due time it knows
// (the script answers the set's next score), is woken at once when its own
// value schedules an earlier one, and looks again at least every
// [DelayRecheck] (1 s), so there is no polling when idle and no lag when due.
// The lateness: an entry is moved within milliseconds of its due time by the
// mover of the value that scheduled it (measured on an idle 2-core machine:
// p50 2.6 ms, p99 11 ms; 10,000 entries due at one instant all delivered
// within 110 ms of it). When that value is gone (closed or crashed) a mover of
// another value serving the topic moves it, up to [DelayRecheck] late. A
// delayed entry on a topic that no running relay value subscribes to or
// published delayed entries on waits in its set until one does.
//
// The set's key is chosen to share the stream's hash slot, since on a Redis
// Cluster a script may only touch keys of one slot. The cluster
// specification (Redis 7.0) hashes a key's hash tag, the part between its
// first '{' and the next '}' when not empty, or else the whole key. A topic
// with a hash tag gets topic + ">delayed" ("orders{eu}>delayed"), a topic
// without '}' gets "{" + topic + "}>delayed" ("{orders}>delayed"; a '{' in the
// topic does not matter, the first '{' is ours), and a topic holding '}' but no
// tag, which no tag can equal, gets a prefix tag "{s<n>}" picked for its slot
// ("{s1234}a}b>delayed"). No topic can name such a key: '>' is not allowed in
// topics. The package's tests check the slots against CLUSTER KEYSLOT of a
// cluster-enabled redis-server 7.0.15.
//
// # Topics
//
// A topic is the key of its stream, unchanged, as in watermill-redisstream.
// Topics follow [relay.ValidateTopic]. Streams grow without bound unless
// [WithMaxLen] caps them (XADD MAXLEN ~): trimming is blind to consumer
// groups, so an entry trimmed before it was read is lost.
//
// # Limits
//
// Redis refuses a command argument longer than its proto-max-bulk-len (512
// MiB by default) with an untyped protocol error, or cuts the connection
// while the command is written. Publish reads that setting with CONFIG GET
// on its first call, keeps it, and refuses an entry with a longer field
// (payload, UUID, or the metadata encoded as msgpack) with an error wrapping
// [relay.ErrPayloadTooLarge] before anything is sent. Where CONFIG is refused
// (ACL, managed Redis services that rename or forbid it), it logs a warning
// once and assumes the default, 512 MiB; a server set lower then answers with
// its own error. A change of the setting after the first Publish is not
// seen. The whole XADD must also fit the server's client-query-buffer-limit
// (1 GiB by default), which Redis checks itself.
//
// # Wire format
//
// An entry has the fields of watermill-redisstream: "_watermill_message_uuid"
// (the UUID), "metadata" (a msgpack map of strings, empty when there is no
// metadata) and "payload" (the bytes, unchanged). Entries with only a payload
// field, as older relay versions wrote, are read with an empty UUID. The byte
// face writes a new UUID and no metadata.
//
// # Watermill
//
// [Subscriber] sends one message at a time per worker on each Subscribe
// channel and waits for its Ack or Nack. On Close, or when the Subscribe
// context is done, the channel is closed after the last send; messages sent
// but neither acked nor nacked stay pending.
//
// # Consumers
//
// A consumer is named after the host plus a random suffix, new for every
// Broker or Subscriber, or [WithConsumer]; a second subscription to the same
// topic by one value gets "-2" appended, and so on. On Close each
// subscription deletes its consumer when nothing is pending on it. Besides,
// every subscription removes now and then the group's consumers that have no
// pending entry and have been idle for ten times the larger of the claim and
// block timeouts (those of processes that died), checking and deleting in one
// atomic script, so that the group's consumer list does not grow with every
// restart. A consumer that still has pending entries is kept until they are
// claimed.
//
// # Connections
//
// Each subscription blocks in XREADGROUP for up to [WithBlockTimeout]. With a
// *redis.Client, that read runs on a client of the subscription's own, made
// from the client's Options() with a pool of one connection: every
// subscription opens one connection of its own to Redis (count them against
// the server's maxclients), takes none from the client's pool, and Close
// ends a read in progress at once by closing it. The client's hooks
// (AddHook: tracing, metrics) do not see these reads; they see every other
// command. With a *redis.ClusterClient the same holds: the read runs on a
// client of one connection made from the cluster client's node client of the
// master of the stream's slot, made again from the master of the moment
// after a read failed (a failover, a resharding), so a subscription opens one
// connection to one node. With any other [redis.UniversalClient] (a ring), the read
// holds a connection of the client's pool while it blocks, and Close waits up
// to the block timeout for it: size the pool (PoolSize, per node) to at least
// the number of subscriptions plus the publishers and handlers that use the
// client at once, or reads starve Publish, Subscribe, acks and claims.
// Subscribe logs a warning when the subscriptions reach the pool size.
//
// # Inspection
//
// [NewInspector] returns the [relay.Inspector] of this backend, over the
// caller's client: it lists the streams of relay's topics, reports per
// consumer group what XINFO GROUPS, XINFO CONSUMERS and XPENDING say
// (pending, lag, consumers and their idle time, the age of the oldest pending
// entry, redeliveries), lists the entries of a dead-letter stream in pages,
// and redrives (XADD, with [WithReplicaAcks] followed by WAIT, then XDEL)
// or purges (XDEL) them; [Inspector.Tail]
// follows a topic with XREAD, outside any group. A key of a topic's
// name that is not a stream relay wrote is reported with [ErrForeignKey].
//
// # Telemetry
//
// [WithTracerProvider], [WithMeterProvider] and [WithPropagators] set what
// relay records OpenTelemetry spans and metrics with; without them the
// global provider and propagator, read when the value is made (the
// OpenTelemetry convention for instrumentation libraries: no-ops until the
// application installs an SDK, which costs no allocation per message).
//
// Publish (both faces) starts one producer span per message, "send <topic>",
// a child of ctx (byte face) or of msg.Context() (Watermill face; a batch
// gets one span per message), and writes its context into the message's
// metadata field with the propagator: traceparent and tracestate (W3C Trace
// Context), and baggage when the propagator includes it. Each delivery
// attempt is a consumer span, "process <topic>", whose parent is the context
// read from the message: a byte handler has no context, so its span is
// recorded around it; the Watermill face hands the handler a msg.Context()
// that carries the span, so the handler's own spans are its children. A
// message without trace context, or with a malformed traceparent, gets a new
// root span and is delivered as any other. A retry and a dead letter are
// events on the span, a failure sets its status, and a dead letter keeps the
// trace context of its source message (its metadata is the source's).
// Attributes: messaging.system "redis" (semconv v1.43.0 has no
// well-known value for it), messaging.destination.name (the topic),
// messaging.consumer.group.name, messaging.message.id (the UUID),
// messaging.operation.name and .type, and relay.delivery.attempt (the
// delivery count, from 1).
//
// Metrics: messaging.client.sent.messages, messaging.client.consumed.messages
// (one per delivery attempt), messaging.client.operation.duration (publish,
// seconds), messaging.process.duration (a delivery attempt with its
// settling, seconds), relay.delivery.outcomes with relay.delivery.outcome =
// acked, retried, dead_lettered or handed_back (not processed: its consumer
// stopped), relay.messages.held (read or claimed and not yet settled: queued
// for a worker or in a handler), and the observable gauges relay.consumer.lag
// and relay.consumer.pending per topic
// and group subscribed (or initialized) by the value, read with XINFO GROUPS as [Inspector.Topic] reads them (lag and pending of Redis 7.0.15; a group whose lag Redis cannot tell is left out), asked at
// most once per second however often the reader collects.
//
// # Ownership
//
// The caller owns the client: Close never closes it, and it must stay open
// until Close returned. Close stops reading (see Connections), waits for the
// running handlers (without bound: [Broker.Shutdown] takes a context),
// acknowledges those that succeeded, leaves every other entry pending, hands
// the entries read ahead that no handler saw back to the group (their
// delivery counter restored, idle as long as the claim timeout, so another
// consumer claims them at once), lets the publish calls in flight finish and
// returns once no goroutine of the value is left. Read failures (Redis down)
// are logged and retried after a pause that grows to 2 seconds; consumption
// resumes by itself, and a group lost with a non-persistent server (or by
// XGROUP DESTROY) is created again, at "0" whatever [WithStartID] says, so
// that what was published meanwhile is delivered.
package redisstreams
