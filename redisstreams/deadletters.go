package redisstreams

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

// DeadLetters yields the entries of the stream of deadLetterTopic that f
// selects, oldest first (XRANGE) or newest first (XREVRANGE) with f.Newest,
// read in pages of 100 entries, so that a long stream is never held at once;
// with f.IDs it reads just those entries (XRANGE id id). Each entry is
// decoded as relay stores it (see the package doc, Wire format): an entry
// that lacks some field, or that relay did not write, is yielded with what
// could be read (no payload field: an empty payload). The age of f.OlderThan
// is measured against the server's TIME, read once per call. The error
// yielded, once and last, wraps [relay.ErrUnknownTopic] when the stream does
// not exist, [ErrForeignKey] when the key is not a stream, or is the Redis
// error; a break in the range loop stops the reads.
func (in *Inspector) DeadLetters(ctx context.Context, deadLetterTopic string, f relay.DeadLetterFilter) iter.Seq2[relay.DeadLetter, error] {
	return func(yield func(relay.DeadLetter, error) bool) {
		if err := in.deadLetters(ctx, deadLetterTopic, f, yield); err != nil {
			yield(relay.DeadLetter{}, fmt.Errorf("%s: inspect dead letters %q: %w", pkg, deadLetterTopic, err))
		}
	}
}

// deadLetters yields what DeadLetters yields, and returns the error to
// yield last; nil once yield returned false.
func (in *Inspector) deadLetters(ctx context.Context, topic string, f relay.DeadLetterFilter, yield func(relay.DeadLetter, error) bool) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return err
	}
	key := streamKey(topic)
	c := boundedClient(ctx, in.client)
	if err := checkStream(ctx, c, key); err != nil {
		return err
	}
	now, err := c.Time(ctx).Result()
	if err != nil {
		return err
	}
	n := 0
	// emit yields the entries f keeps and reports whether to go on.
	emit := func(page []redis.XMessage) bool {
		for _, x := range page {
			m, _ := decode(x.Values) // partial on error: yielded with what it has
			dl := delivery.ReadDeadLetter(topic, x.ID, idTime(x.ID), m)
			if !f.Match(dl, now) {
				continue
			}
			if !yield(dl, nil) {
				return false
			}
			if n++; f.Limit > 0 && n >= f.Limit {
				return false
			}
		}
		return true
	}
	if len(f.IDs) > 0 {
		page, err := byIDs(ctx, c, key, f.IDs, f.Newest)
		if err != nil {
			return err
		}
		emit(page)
		return nil
	}
	from := "-"
	if f.Newest {
		from = "+"
	}
	for {
		var page []redis.XMessage
		if f.Newest {
			page, err = c.XRevRangeN(ctx, key, from, "-", deadLetterPage).Result()
		} else {
			page, err = c.XRangeN(ctx, key, from, "+", deadLetterPage).Result()
		}
		if err != nil {
			return err
		}
		if !emit(page) || len(page) < deadLetterPage {
			return nil
		}
		from = "(" + page[len(page)-1].ID
	}
}

// byIDs reads the entries of ids that exist, in one pipeline, in stream
// order (reversed when newest). Ids that are not entry ids are not there.
func byIDs(ctx context.Context, c redis.Cmdable, key string, ids []string, newest bool) ([]redis.XMessage, error) {
	ids = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { _, _, ok := parseID(id); return !ok })
	slices.SortFunc(ids, compareIDs)
	ids = slices.Compact(ids)
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.XMessageSliceCmd, len(ids))
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.XRangeN(ctx, key, id, id, 1)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var out []redis.XMessage
	for _, cmd := range cmds {
		out = append(out, cmd.Val()...)
	}
	if newest {
		slices.Reverse(out)
	}
	return out, nil
}

// Redrive publishes dl again on to, or on dl.SourceTopic when to is empty,
// as Publish would (XADD, trimmed as [WithMaxLen] says, creating the stream
// when it has none), under a new UUID and with the metadata of
// [delivery.Redriven]'s rule: dl's without relay's dead-letter keys, plus
// [relay.MetadataRedrivenFrom] = "<dl.Topic>/<dl.ID>". Only once Redis
// answered the XADD with the new entry's id does it delete dl (XDEL); that
// XDEL is sent even when ctx ends after the XADD was answered, within 5
// seconds of its own, so that a cancel (an operator stopping a bulk redrive)
// does not leave the message in both places. A failure or a crash in
// between leaves both entries: the message may be delivered twice, never
// lost. A consumer group created later on the topic at [StartOldest] gets
// the message too.
//
// It returns an error wrapping [relay.ErrInvalidTopic], before anything is
// sent, when the destination (or dl.Topic) is not a valid topic or dl has no
// id, and one wrapping [relay.ErrDeadLetterGone], before anything is sent
// but that XRANGE, when dl's stream no longer has its entry (XRANGE id id
// answers nothing: redriven or purged since it was read, or trimmed);
// otherwise the Redis error, wrapped (after a failed XDEL the message is
// already published: a second Redrive publishes it again). The check and
// the XADD are separate commands: two redrives of one dead letter at the
// same moment may both pass the check and publish it twice (a duplicate,
// never a loss); the second XDEL then removes nothing, which is not an
// error.
//
// With [WithReplicaAcks] given to [NewInspector], the republish is durable
// in the sense of Publish's: the XADD is followed by WAIT on the connection
// of the destination's master, and the dead letter is deleted only once
// enough replicas acknowledged the new entry. When too few did in time,
// Redrive returns an error wrapping [ErrNotReplicated] and keeps the dead
// letter; the new entry is on the master and may be delivered, so redriving
// again may deliver the message twice, never lose it. The XDEL itself is not
// waited for: a deletion that a failover loses leaves a duplicate only.
func (in *Inspector) Redrive(ctx context.Context, dl relay.DeadLetter, to string) error {
	dest, err := delivery.RedriveTopic(dl, to)
	if err == nil {
		err = checkDeadLetter(dl)
	}
	if err != nil {
		return fmt.Errorf("%s: redrive %q: %w", pkg, dl.Topic+"/"+dl.ID, err)
	}
	values, err := encode(delivery.Redriven(dl, watermill.NewUUID()))
	if err == nil {
		err = in.checkStored(ctx, dl)
	}
	if err != nil {
		return fmt.Errorf("%s: redrive %q: %w", pkg, dl.Topic+"/"+dl.ID, err)
	}
	id, err := in.republish(ctx, &redis.XAddArgs{Stream: streamKey(dest), Values: values,
		MaxLen: in.cfg.maxLen, Approx: true})
	if err == nil && id == "" {
		err = errors.New("XADD answered no id")
	}
	if errors.Is(err, ErrNotReplicated) {
		return fmt.Errorf("%s: redrive %q to %q: published as %s, but the dead letter was kept: %w",
			pkg, dl.Topic+"/"+dl.ID, dest, id, err)
	}
	if err != nil {
		return fmt.Errorf("%s: redrive %q to %q: publish: %w", pkg, dl.Topic+"/"+dl.ID, dest, err)
	}
	// The message is out: delete the dead letter even when ctx ends now
	// (an operator's Ctrl-C), so that stopping does not leave a duplicate.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if err := boundedClient(dctx, in.client).XDel(dctx, streamKey(dl.Topic), dl.ID).Err(); err != nil {
		return fmt.Errorf("%s: redrive %q to %q: published as %s, but the dead letter was not deleted: %w",
			pkg, dl.Topic+"/"+dl.ID, dest, id, err)
	}
	return nil
}

// checkStored returns an error wrapping relay.ErrDeadLetterGone when dl's
// stream no longer has its entry (XRANGE id id), the Redis error when it
// cannot tell.
func (in *Inspector) checkStored(ctx context.Context, dl relay.DeadLetter) error {
	xs, err := boundedClient(ctx, in.client).XRangeN(ctx, streamKey(dl.Topic), dl.ID, dl.ID, 1).Result()
	switch {
	case err != nil:
		return fmt.Errorf("check the dead letter: %w", err)
	case len(xs) == 0:
		return relay.ErrDeadLetterGone
	}
	return nil
}

// republish sends the XADD of a redrive and returns the new entry's id:
// alone, or with [WithReplicaAcks] followed by WAIT on the connection of the
// destination's master, as Publish sends it, so that the dead letter is
// deleted only once the copy is as durable as a published message. When
// WAIT falls short it returns the id with an error wrapping
// [ErrNotReplicated].
func (in *Inspector) republish(ctx context.Context, args *redis.XAddArgs) (string, error) {
	if in.cfg.replicaAcks == 0 {
		return boundedClient(ctx, in.client).XAdd(ctx, args).Result()
	}
	// The engine's write helpers use only its client and config.
	e := &engine{client: in.client, cfg: in.cfg}
	m, err := e.masterFor(ctx, args.Stream)
	if err != nil {
		e.failedOn(err)
		return "", err
	}
	var add *redis.StringCmd
	werr := e.pipeWait(ctx, m, func(p redis.Pipeliner) { add = p.XAdd(ctx, args) })
	if err := add.Err(); err != nil {
		werr = err
	}
	e.failedOn(werr)
	return add.Val(), werr
}

// checkDeadLetter returns an error wrapping relay.ErrInvalidTopic when dl
// does not say where it is stored.
func checkDeadLetter(dl relay.DeadLetter) error {
	if err := relay.ValidateTopic(dl.Topic); err != nil {
		return fmt.Errorf("dead letter's topic: %w", err)
	}
	if _, _, ok := parseID(dl.ID); !ok {
		return fmt.Errorf("%w: dead letter has no entry id (got %q)", relay.ErrInvalidTopic, dl.ID)
	}
	return nil
}

// Purge deletes dl from its stream (XDEL of dl.ID on dl.Topic). A dead
// letter, or a stream, already gone is not an error. It returns an error
// wrapping [relay.ErrInvalidTopic] when dl does not name a valid topic and
// entry id, or the Redis error (WRONGTYPE for a key that is not a stream).
func (in *Inspector) Purge(ctx context.Context, dl relay.DeadLetter) error {
	err := checkDeadLetter(dl)
	if err == nil {
		err = boundedClient(ctx, in.client).XDel(ctx, streamKey(dl.Topic), dl.ID).Err()
	}
	if err != nil {
		return fmt.Errorf("%s: purge %q: %w", pkg, dl.Topic+"/"+dl.ID, err)
	}
	return nil
}

// deleteIdleConsumerScript deletes consumer ARGV[2] of group ARGV[1] on
// stream KEYS[1] if it has no pending entry, checking and deleting in one
// atomic step, so that an entry the consumer reads in between is not dropped
// with it. It returns 1 when it deleted the consumer, 0 when the group has
// no such consumer, and minus its pending count otherwise.
var deleteIdleConsumerScript = redis.NewScript(`
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] == ARGV[2] then
    if f['pending'] > 0 then return -f['pending'] end
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
    return 1
  end
end
return 0
`)

// DeleteConsumer removes consumer from group on topic's stream (XGROUP
// DELCONSUMER) when XINFO CONSUMERS shows it has no pending entry, in one
// atomic script. It returns an error wrapping [relay.ErrConsumerPending] when
// it has some (nothing is removed), [relay.ErrUnknownConsumer] for a group or
// consumer the stream does not have, [relay.ErrUnknownTopic] when the key
// does not exist, [ErrForeignKey] when it is not a stream, or the Redis
// error.
func (in *Inspector) DeleteConsumer(ctx context.Context, topic, group, consumer string) error {
	if err := in.deleteConsumer(ctx, topic, group, consumer); err != nil {
		return fmt.Errorf("%s: delete consumer %q of group %q on %q: %w", pkg, consumer, group, topic, err)
	}
	return nil
}

func (in *Inspector) deleteConsumer(ctx context.Context, topic, group, consumer string) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return err
	}
	key := streamKey(topic)
	c := boundedClient(ctx, in.client)
	if err := checkStream(ctx, c, key); err != nil {
		return err
	}
	n, err := deleteIdleConsumerScript.Run(ctx, c, []string{key}, group, consumer).Int64()
	switch {
	case redis.HasErrorPrefix(err, "NOGROUP"):
		return fmt.Errorf("%w: no group %q", relay.ErrUnknownConsumer, group)
	case err != nil:
		return err
	case n == 0:
		return fmt.Errorf("%w: group %q has no consumer %q", relay.ErrUnknownConsumer, group, consumer)
	case n < 0:
		return fmt.Errorf("%w: %d entries", relay.ErrConsumerPending, -n)
	}
	return nil
}
