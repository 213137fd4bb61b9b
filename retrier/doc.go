// Package retrier gives the delivery contract's retries and dead letters to a
// [relay.Broker] that does not provide them itself.
//
// A broker says that it retries failed deliveries and writes dead letters on
// its own by implementing [NativeRetrier] with HandlesRetries returning true;
// natsjs and redisstreams do. [New] wraps any other broker (memory made with
// memory.WithNativeRetries(false), or a third-party broker) in a retry loop:
//
//	b, err := retrier.New(inner, retrier.WithMaxDeliver(5))
//	if err != nil { ... }
//	defer b.Close() // also closes inner
//
// New without options leaves a native broker as it is, so that a program can
// call it on whatever broker it was configured with. New with options refuses a
// native broker ([relay.ErrInvalidOption]) rather than ignore them: configure
// max deliver, backoff and dead-letter topic on that broker itself.
//
// # Delivery semantics
//
// The wrapped broker still stores and delivers the messages; the retrier runs
// inside the handler that it hands to the wrapped broker's Subscribe. For each
// delivery it calls the user's handler up to [WithMaxDeliver] times in all
// (default [DefaultMaxDeliver]), waiting between attempts for an exponential
// backoff with jitter bounded by [WithBackoff] (default [DefaultMinBackoff] to
// [DefaultMaxBackoff], never below the min nor above the max): the same policy, computed by the same code, as the native
// backends apply. A panic in the handler is recovered and counts as a failed
// attempt. The wrapped broker sees success (its handler returns nil) once the
// user's handler succeeded or once the message was written to the dead-letter
// topic, and a failure otherwise, so the message is never acknowledged
// before it was handled or dead-lettered: delivery stays at least once.
//
// Because the attempts of one delivery run in place, a message waiting for its
// next attempt occupies one of the wrapped broker's handler slots (its
// concurrency), and with a concurrency of 1 the next message waits for it:
// order per subscription is kept. The attempt count lives in memory: when the
// wrapped broker redelivers a message (after Close, or after the process died),
// counting starts again at one.
//
// # Retries and dead letters
//
// After the last failed attempt, or at once when the handler's error wraps
// [relay.ErrPermanent], the payload is published through the wrapped broker's
// Publish to the dead-letter topic (by default the topic plus ".dead", see
// [WithDeadLetterTopic]). The byte face carries no metadata, so the dead letter
// is the payload byte for byte and nothing else; the source topic, the number
// of attempts and the last error are written to the logger ([WithLogger]) at
// level Warn when the message is dead-lettered.
//
// When that publish fails, the message is not dropped: the publish is retried
// with the same backoff, each failure is logged at level Error and passed to
// the function of [WithErrorHandler], until it succeeds or the broker is
// closed. A publish error that cannot go away by waiting (an invalid dead-letter
// topic, a payload too large, a closed wrapped broker) is not retried; then, as
// after Close, the retrier's handler returns an error to the wrapped broker,
// which keeps the message for redelivery.
//
// # Telemetry
//
// [WithTracerProvider] and [WithMeterProvider] make the retrier record each
// of its attempts: a "process <topic>" span with relay.delivery.attempt and
// a retry or dead_letter event, and relay.delivery.outcomes (acked, retried,
// dead_lettered, handed_back when Close interrupts a dead-letter publish)
// with messaging.system "relay", so that its counts are told apart from
// those of the wrapped broker, which counts each of its own deliveries (one
// per retry loop). A byte handler carries no context, so the retrier's spans
// are new roots; the trace context of the message travels through the
// wrapped broker, and a dead letter the retrier publishes carries the trace
// context of its last attempt's span, not the source message's.
//
// # Close and ownership
//
// New takes ownership of the broker it wraps: [relay.Broker.Close] on the broker
// it returns stops the retry loops (a backoff wait or a dead-letter publish in
// progress is interrupted at once; a handler call that is running is waited
// for), then closes the wrapped broker. Deliveries interrupted that way are
// returned to the wrapped broker as failures, and it keeps them for
// redelivery. Do not close the wrapped broker yourself, and do not call Close
// from a handler: it would wait for that handler to return. The returned
// broker also implements [relay.Shutdowner]: Shutdown(ctx) stops waiting for
// the running handlers when ctx ends (a handler may call it with a
// deadline), and shuts the wrapped broker down with its own Shutdown when it
// has one.
//
// # Delayed messages
//
// Over a broker that implements [relay.DelayedPublisher] (every relay
// backend), the returned broker implements it too: PublishAt is the wrapped
// broker's, and once due the message is delivered through the retry loop like
// any other. Over one that does not, the returned broker does not either. A
// handler's [relay.RetryAfter] lengthens the retrier's wait before the next
// attempt, capped by [WithMaxRetryAfter].
package retrier
