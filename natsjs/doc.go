// Package natsjs is relay's NATS JetStream backend: a [Broker] (the
// [relay.Broker] byte-handler face) and a Watermill [Publisher] and
// [Subscriber], all three over one engine and over the caller's
// jetstream.JetStream (github.com/nats-io/nats.go/jetstream).
//
//	js, _ := jetstream.New(nc)
//	b, err := natsjs.NewBroker(js, natsjs.WithGroup("billing"))
//
// # Delivery semantics
//
// Delivery is at least once. Each topic is a subject held by a stream of its
// own ([StreamName]), created or updated (file storage by default) on the first
// Publish of the process as well as on Subscribe, so messages published before
// any group subscribed are kept. A group ([WithGroup]) is one durable pull
// consumer per topic ([ConsumerName]) with explicit acks: the subscriptions of
// a group compete for its messages, different groups each get every message,
// and a new group starts from everything the stream still holds (deliver
// policy "all"; [WithConsumerConfig] may change that).
//
// Publish returns once JetStream acknowledged the message (PubAck): it is
// durable then. Every message carries a Nats-Msg-Id equal to its UUID, so a
// publish retried within the stream's duplicate window (two minutes by
// default) is stored once. The flip side: a Watermill message published again
// with the same UUID inside that window is taken for a retry, acknowledged,
// and not stored again; to publish a message anew (to redrive a dead letter,
// say), give it a new UUID. Publishes are pipelined: concurrent calls, and the
// messages of one Watermill Publish, are sent without waiting for each other's
// acknowledgement, and each caller gets its own.
//
// Each subscription runs up to [WithConcurrency] handlers and fetches up to
// [WithPrefetch] messages ahead of them, in pull requests for no more messages
// than it has room for, so a fetched message never waits unleased in a
// buffer and a subscription holds a bounded number of messages. While a
// message is held (from its arrival until it is settled, whether it waits for
// a handler or runs in one) relay tells JetStream every third of the ack wait
// ([WithAckWait]) that it is in progress, so neither a handler that runs
// longer than the ack wait nor a message waiting behind it is given to a
// second consumer. A consumer that dies or loses its connection stops
// extending its leases, and its messages go to the rest of the group after the
// ack wait.
//
// The subscriptions survive a server restart or an outage without help: a
// pull request that gets no answer expires after a few seconds and is sent
// again once the connection is back; a failed fetch, or a pull request that a
// connected server did not end within a few seconds (its consumer gone), is
// retried with backoff (never in a hot loop) after setting up the stream and
// consumer again.
// Publish retries transient failures (disconnection, no responders, JetStream
// unavailable) with backoff within its context; the retries are safe because
// of Nats-Msg-Id. A server, or an account, without JetStream is not
// transient: Publish and Subscribe return an error wrapping
// jetstream.ErrJetStreamNotEnabled (or ErrJetStreamNotEnabledForAccount) at
// once. The connection itself, and how it reconnects, is the caller's.
//
// # Retries and dead letters
//
// A handler that returns an error, panics, or a Watermill message that is
// nacked, is negatively acknowledged with a delay (NakWithDelay) that grows
// from the minimum to the maximum backoff ([WithBackoff]); JetStream
// redelivers it then, to any member of the group. There is no immediate
// redelivery loop. An error that wraps [relay.ErrPermanent] sends the message
// to the dead-letter topic at once.
//
// After max deliver ([WithMaxDeliver]) failed deliveries, the message is
// published to the dead-letter topic ([WithDeadLetterTopic], by default the
// topic plus ".dead") with its payload byte for byte, its metadata, and the
// metadata keys [relay.MetadataSourceTopic], [relay.MetadataSourceID] (the
// stream sequence), [relay.MetadataAttempts] and [relay.MetadataReason] (the
// last error); only once JetStream acknowledged the dead letter is the source
// message acknowledged. If the dead letter cannot be published, the source
// message stays pending and is tried again after a backoff.
//
// A dead letter is always publishable: Publish refuses a message whose
// payload and headers leave less than [DeadLetterReserve] (768 bytes) of the
// server's max_payload for the dead-letter metadata (on a small server, never
// less than that topic's dead letter needs), or whose headers leave less than
// that of JetStream's 64 KiB header limit; the reason is cut to fit in that
// room; and metadata keys that cannot be sent as NATS headers (a message
// stored by another client may carry such headers) are left out of the dead
// letter, which says so in its reason. A dead letter's Nats-Msg-Id is unique
// to its group and stored message, and a "duplicate" answer counts as
// stored only once the dead-letter stream shows a message of that id.
//
// relay does not set the consumer's MaxDeliver to max deliver: it sets it to
// -1 (unlimited) and counts deliveries itself from the delivery count that
// JetStream reports with every message (NumDelivered). With a server-side
// limit, a consumer that died during the last attempt would leave the message
// neither acknowledged nor dead-lettered, and the server would never deliver
// it again: silently lost. Instead, such a message is delivered once more,
// after the ack wait, to a member of the group, whose handler is called once
// more: if it succeeds the message is acknowledged, if it fails the message is
// dead-lettered at once (with an attempt count above max deliver). The same
// holds for a message that a Close handed back (see below). The consumer's
// server-side BackOff is not used either; relay's own delays apply.
//
// Close, or a canceled Watermill subscription, negatively acknowledges the
// messages it fetched but did not handle, for immediate redelivery to the
// group, including those the server had already sent for a pull request in
// progress (the request is drained, not dropped). JetStream counts these as
// deliveries too, so a message caught by shutdowns may come back past max
// deliver; it is still handled once more before it can be dead-lettered.
//
// A stored message whose headers relay cannot read as metadata (a header with
// several values) goes to the dead-letter topic with the decode error,
// without calling the handler. A message without the UUID header (published
// by another client) is delivered with an empty UUID.
//
// A handler error made by [relay.RetryAfter] (on the Watermill face, a Nack
// behind [relay.NackReason]) is negatively acknowledged with a delay
// (NakWithDelay) of the larger of the backoff and its wait, capped by
// [WithMaxRetryAfter] (1 hour by default); it still counts as a delivery.
//
// # Delayed delivery
//
// [Broker.PublishAt] ([relay.DelayedPublisher]) and a Watermill message with
// [relay.MetadataDelayedUntil] (so Watermill's delay.NewPublisher works on
// [Publisher]) use JetStream message schedules (nats-server 2.12 and later;
// ADR-51): the message is published, acknowledged and stored like any other,
// on a subject of its own under [ScheduleSubjectPrefix] in the topic's
// stream, with the headers "Nats-Schedule: @at <due time, RFC 3339 with
// nanoseconds>" and "Nats-Schedule-Target: <topic>". The server publishes it
// on the topic at its time (with the UUID and metadata headers; the
// Nats-Msg-Id is not carried over, so the stream's de-duplication does not
// drop it), then removes the schedule. It survives restarts of the server
// and of every relay process, and is delivered to every group. A due time at
// or before now is an ordinary publish; one further ahead than
// [WithMaxDelay] (30 days by default), the zero time, or a metadata value
// that is not RFC 3339 is refused with [relay.ErrInvalidDelay] and nothing
// is stored.
//
// The first delayed publish on a topic checks the server's version (older
// than 2.12: [ErrSchedulesUnsupported], naming the version, at once; nothing
// is stored, and relay does not fall back to redelivering with
// NakWithDelay), then the topic's stream. A stream without
// allow_msg_schedules, or whose subjects do not capture the topic's
// schedule subjects, gets exactly those two fields updated, and nothing else
// (logged at Info for a stream of relay's name, at Warn for another's). A
// mirror, or a stream with sources, cannot take schedules:
// [ErrSchedulesUnsupported] again. A stream max age shorter than the delay
// drops the schedule before it fires.
//
// Lateness is the server's: nats-server v2.15.2 sets its scheduler timer no
// sooner than 250 ms ahead (server/scheduler.go), so a schedule due within
// 250 ms of the scheduler's last run, or of its own publish, comes up to
// about 250 ms late. Never early. Measured by the benchmark program's
// delayed cases (BENCHMARKS.md) on an idle 2-core machine, embedded
// nats-server v2.15.2: 200 messages due one every 5 ms, p50 127 ms, p99
// 251 ms; 20 due one every 400 ms (each firing alone), p50 110 ms, p99
// 223 ms. So on NATS a delayed message may come up to a quarter second
// after its due time, where memory and redisstreams deliver within a few
// milliseconds.
// Order follows due times for messages due a second or more apart; the
// schedules due when the scheduler runs fire in the order of its timing wheel,
// so messages due within a few hundred milliseconds of each other may be
// delivered in either order (seen on a loaded 3-node cluster: due 200 ms
// apart, delivered 1, 3, 2).
//
// # Topics
//
// Topics follow [relay.ValidateTopic] and are used as NATS subjects unchanged,
// so the dots of "orders.eu" are subject tokens. Stream and consumer names are
// derived by [StreamName] and [ConsumerName]: unchanged when the topic is a
// plain name, otherwise sanitized with a hash suffix, so that no two topics
// share a stream. When another stream already captures the topic's subject
// (one made by another tool), relay uses that stream rather than failing.
// [WithStreamConfig] adjusts the streams relay creates (storage, replicas,
// limits) and [WithConsumerConfig] the consumers; both list the fields relay
// sets back.
//
// # Watermill
//
// [Publisher] and [Subscriber] are Watermill's message.Publisher and
// message.Subscriber. The wire format is that of watermill-nats v2
// (pkg/jetstream with its NATS marshaler): the payload is the message data, the
// UUID is the header [UUIDHeader] ("_watermill_message_uuid"), each metadata
// entry is a header, and headers starting with "Nats-" belong to JetStream and
// are not metadata. A service can thus move between watermill-nats and relay
// one process at a time, and [Broker] and [Subscriber] read each other's
// messages. Metadata keys must be valid NATS header names and must not start
// with "Nats-" (in any case: JetStream would act on such a header, for
// example Nats-Expected-Stream or Nats-TTL); Publish refuses such a message
// with an error naming the key. NATS trims white space around header values.
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
// headers with the propagator: traceparent and tracestate (W3C Trace
// Context), and baggage when the propagator includes it. Each delivery
// attempt is a consumer span, "process <topic>", whose parent is the context
// read from the message: a byte handler has no context, so its span is
// recorded around it; the Watermill face hands the handler a msg.Context()
// that carries the span, so the handler's own spans are its children. A
// message without trace context, or with a malformed traceparent, gets a new
// root span and is delivered as any other. A retry and a dead letter are
// events on the span, a failure sets its status, and a dead letter keeps the
// trace context of its source message (its metadata is the source's).
// Attributes: messaging.system "nats" (semconv v1.43.0 has no
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
// stopped), relay.messages.held (fetched and not yet settled), and the
// observable gauges relay.consumer.lag and relay.consumer.pending per topic
// and group subscribed (or initialized) by the value, read from the durable consumer's info (JetStream's num_pending and num_ack_pending, nats-server v2.15), asked at
// most once per second however often the reader collects.
//
// # Inspection
//
// [NewInspector] returns the [relay.Inspector] of the backend, over the
// caller's jetstream.JetStream: the topics of relay's streams, per topic its
// stream's figures and one group per durable consumer (pending, lag,
// redeliveries, oldest pending, read from stream and consumer info), and the
// dead letters, which it redrives (a new message with a new UUID, then
// STREAM.MSG.DELETE of the dead letter) or purges; its Tail follows a topic
// without a consumer ([relay.Tailer]). [Inspector] says which server figure
// each field is. It never takes a message from a consumer.
//
// # Ownership
//
// The jetstream.JetStream and its connection belong to the caller: relay
// configures nothing on them and never closes them. Close on a [Broker] or
// [Subscriber] stops fetching, returns the messages fetched but not handled,
// waits for the running handlers, settles them, flushes the
// acknowledgements, and leaves no goroutine behind. Close waits without
// bound and must not be called from inside a handler; Shutdown(ctx) is Close
// that gives up waiting when ctx is done, leaving the messages of the
// handlers still running to be redelivered after the ack wait. A [Publisher] has nothing to close beyond
// refusing further calls.
package natsjs
