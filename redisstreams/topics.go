package redisstreams

// streamKey is the Redis key of the stream that holds topic. It is the topic
// itself, as in watermill-redisstream, so that both read and write the same
// streams; every topic that relay.ValidateTopic accepts is a valid key. A
// dead-letter topic maps the same way.
func streamKey(topic string) string { return topic }
