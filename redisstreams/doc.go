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
// and redrives (XADD, then XDEL) or purges (XDEL) them; [Inspector.Tail]
// follows a topic with XREAD, outside any group. A key of a topic's
// name that is not a stream relay wrote is reported with [ErrForeignKey].
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
