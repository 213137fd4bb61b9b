package relay

import "time"

// Defaults and limits of the options that every backend and the retrier share
// (WithMaxDeliver, WithBackoff, WithDeadLetterTopic, WithConcurrency,
// WithPrefetch). Each package exports its defaults again under its own names,
// with the same values, and its option docs link here.
const (
	// DefaultMaxDeliver is the number of deliveries of a message, the first
	// included, after which a failing message goes to the dead-letter topic,
	// when WithMaxDeliver is not given.
	DefaultMaxDeliver = 3
	// DefaultMinBackoff is the shortest wait before a redelivery when
	// WithBackoff is not given. After the k-th failed delivery of a message,
	// with WithBackoff(min, max), the step is min·2^(k-1) capped at max, and
	// the wait is drawn uniformly from [step, min(2·step, max)]: never below
	// min, never above max.
	DefaultMinBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff is the longest wait before a redelivery when
	// WithBackoff is not given.
	DefaultMaxBackoff = 10 * time.Second

	// MinBackoffFloor is the smallest min that WithBackoff accepts, in every
	// package: a shorter wait would make a failing message a busy loop.
	MinBackoffFloor = time.Millisecond
	// MaxConcurrency is the largest value WithConcurrency accepts, in every
	// backend: handlers run on that many goroutines per subscription.
	MaxConcurrency = 1 << 16
	// MaxPrefetch is the largest value WithPrefetch accepts, in every backend
	// that has the option: a subscription buffers that many messages, plus its
	// concurrency, ahead of its handlers.
	MaxPrefetch = 1 << 16
)

// DefaultDeadLetterTopic returns the dead-letter topic of topic when
// WithDeadLetterTopic is not given: topic + ".dead" ("orders" →
// "orders.dead").
func DefaultDeadLetterTopic(topic string) string { return topic + ".dead" }
