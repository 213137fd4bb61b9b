package redisstreams

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
)

// tailPage is the number of entries one XREAD of [Inspector.Tail] reads.
const tailPage = 100

// Tail yields the entries added to topic's stream after the call, as they
// arrive, decoded as [Inspector.DeadLetters] decodes them. It reads with
// XREAD BLOCK (no consumer group: nothing is taken from any group and
// nothing is left on the server), from the stream's last-generated-id at the
// call (XINFO STREAM), each read blocking for up to [WithBlockTimeout] (2
// seconds by default) and holding a connection of the client's pool meanwhile.
// When ctx is done the sequence ends without an error, within the block
// timeout. The error yielded, once and last, wraps [relay.ErrUnknownTopic]
// when the topic has no stream, [ErrForeignKey] when its key is not a
// stream, [relay.ErrInvalidTopic] for an invalid topic, or is the Redis error
// (a server restart ends the sequence with it).
func (in *Inspector) Tail(ctx context.Context, topic string) iter.Seq2[relay.StoredMessage, error] {
	return func(yield func(relay.StoredMessage, error) bool) {
		if err := in.tail(ctx, topic, yield); err != nil && ctx.Err() == nil {
			yield(relay.StoredMessage{}, fmt.Errorf("%s: tail %q: %w", pkg, topic, err))
		}
	}
}

// tail yields what Tail yields and returns the error to yield last; nil
// once yield returned false.
func (in *Inspector) tail(ctx context.Context, topic string, yield func(relay.StoredMessage, error) bool) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return err
	}
	key := streamKey(topic)
	if err := checkStream(ctx, boundedClient(ctx, in.client), key); err != nil {
		return err
	}
	s, err := boundedClient(ctx, in.client).XInfoStream(ctx, key).Result()
	if err != nil {
		return err
	}
	last := s.LastGeneratedID
	for ctx.Err() == nil {
		// Not bounded by ctx's deadline: go-redis adds the block time to
		// the read timeout of a blocking command.
		res, err := in.client.XRead(ctx, &redis.XReadArgs{Streams: []string{key, last},
			Count: tailPage, Block: in.cfg.blockTimeout}).Result()
		if errors.Is(err, redis.Nil) {
			continue // nothing new within the block time
		}
		if err != nil {
			return err
		}
		for _, st := range res {
			for _, x := range st.Messages {
				m, _ := decode(x.Values) // partial on error: yielded with what it has
				if !yield(relay.StoredMessage{Topic: topic, ID: x.ID, Time: idTime(x.ID),
					UUID: m.UUID, Payload: m.Payload, Metadata: m.Metadata}, nil) {
					return nil
				}
				last = x.ID
			}
		}
	}
	return nil
}
