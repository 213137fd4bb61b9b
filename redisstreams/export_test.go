package redisstreams

import "github.com/redis/go-redis/v9"

// WithReaderHook adds h to the client of each subscription's blocking reads
// (tests count XREADGROUP calls with it).
func WithReaderHook(h redis.Hook) Option {
	return func(c *config) error {
		c.readerHooks = append(c.readerHooks, h)
		return nil
	}
}

// DelayedKey is delayedKey, for the tests of the sorted sets.
func DelayedKey(topic string) string { return delayedKey(topic) }
