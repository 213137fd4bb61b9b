package relay

import (
	"context"
	"errors"
	"iter"
	"regexp"
	"time"
)

// MetadataRedrivenFrom is the metadata key that [Inspector.Redrive] sets on a
// message it publishes again from a dead letter: the dead letter's topic and
// id, "<topic>/<id>".
const MetadataRedrivenFrom = "relay_redriven_from"

// ErrUnknownTopic is returned by an [Inspector] for a topic that has no
// stream (or key, or hub topic) on the backend.
var ErrUnknownTopic = errors.New("relay: unknown topic")

// ErrUnknownConsumer is returned by [Inspector.DeleteConsumer] for a consumer
// group or consumer the topic does not have.
var ErrUnknownConsumer = errors.New("relay: unknown consumer")

// ErrDeadLetterGone is returned by [Inspector.Redrive], before anything is
// published, when the dead letter is no longer stored in its topic: it was
// redriven or purged since it was read (a stale [DeadLetter] value, or two
// operators redriving the same one), or its topic trimmed it.
var ErrDeadLetterGone = errors.New("relay: dead letter no longer stored")

// ErrConsumerPending is returned by [Inspector.DeleteConsumer] for a consumer
// that still has pending messages (delivered, not acknowledged): deleting it
// would leave them to be claimed, or on JetStream lose the group's position.
var ErrConsumerPending = errors.New("relay: consumer has pending messages")

// Inspector is the operator's view of a backend: what a topic holds, how far
// each consumer group is behind, and the dead letters, which it can send back
// (redrive) or remove (purge). Every relay backend has one (memory.Inspector,
// natsjs.NewInspector, redisstreams.NewInspector), over the caller's client;
// the relay command and the examples are written once against this
// interface. Its methods are safe for concurrent use and never take a
// message from a group.
type Inspector interface {
	// Topics returns the topics the backend holds in relay's naming, sorted,
	// dead-letter topics included.
	Topics(ctx context.Context) ([]string, error)

	// Topic returns what topic holds now, and its consumer groups. It returns
	// an error wrapping [ErrUnknownTopic] when the topic has no store.
	Topic(ctx context.Context, topic string) (TopicInfo, error)

	// DeadLetters yields the messages of the dead-letter topic deadLetterTopic
	// that f selects, oldest first unless f.Newest. A dead letter that relay
	// did not write (no reason metadata) is yielded with what it has. An error
	// (ErrUnknownTopic, or the server's) is yielded once, and ends the
	// sequence.
	DeadLetters(ctx context.Context, deadLetterTopic string, f DeadLetterFilter) iter.Seq2[DeadLetter, error]

	// Redrive publishes dl again, as a new message (a new UUID, the payload
	// and the metadata of its source without relay's dead-letter keys, plus
	// [MetadataRedrivenFrom]), on to, or on dl.SourceTopic when to is empty;
	// only once that publish is durable does it remove dl from its topic. A
	// crash in between leaves both: a message may come twice, it is never
	// lost. It returns an error wrapping [ErrInvalidTopic] before anything
	// moves when the destination is not a valid topic, and one wrapping
	// [ErrDeadLetterGone] before anything moves when dl is no longer stored
	// (redriven or purged since it was read). The check comes before the
	// publish and is not atomic with it: two redrives of one dead letter at
	// the same moment may both pass it and publish the message twice (a
	// duplicate, never a loss).
	Redrive(ctx context.Context, dl DeadLetter, to string) error

	// Purge removes dl from its dead-letter topic. A dead letter already gone
	// is not an error.
	Purge(ctx context.Context, dl DeadLetter) error

	// DeleteConsumer removes consumer from the consumer group group of topic,
	// only when it has nothing pending; otherwise it returns an error
	// wrapping [ErrConsumerPending] and removes nothing. On Redis a consumer
	// is one member of the group (XGROUP DELCONSUMER); on JetStream, where a
	// group is one durable consumer, consumer names that durable (the one
	// [ConsumerInfo] of the group) and the durable is deleted, and with it
	// the group's position. An unknown group or consumer is an error wrapping
	// [ErrUnknownConsumer].
	DeleteConsumer(ctx context.Context, topic, group, consumer string) error
}

// Tailer is an optional capability of an [Inspector]: following a topic as
// its messages arrive, without taking them from any consumer group. The
// inspectors of the server backends have it (natsjs, redisstreams), and the
// relay command's tail uses it.
type Tailer interface {
	// Tail yields the messages stored on topic from the call on, as they
	// arrive, until ctx is done (which ends the sequence without an error)
	// or the caller stops. Whatever it set up on the server to follow the
	// topic, it removes when it returns. An error (ErrUnknownTopic, or the
	// server's) is yielded once, and ends the sequence.
	Tail(ctx context.Context, topic string) iter.Seq2[StoredMessage, error]
}

// StoredMessage is one message of a topic as an [Inspector] reads it.
type StoredMessage struct {
	// Topic and ID are the topic and the backend's id of the message in it
	// (a stream sequence, a Redis entry id), Time when it was stored.
	Topic, ID string
	Time      time.Time
	UUID      string
	Payload   []byte
	Metadata  map[string]string
}

// TopicInfo is what a topic holds, as [Inspector.Topic] reads it from the
// server's own accounts (each backend says which commands).
type TopicInfo struct {
	Topic string
	// Store is the backend's name of what holds the topic: the JetStream
	// stream, the Redis key, or the topic itself in memory.
	Store string
	// Messages is the number of messages stored now.
	Messages uint64
	// FirstID and LastID are the backend's ids of the oldest and newest
	// message stored, and FirstTime and LastTime when they were stored; all
	// empty or zero when the topic holds none.
	FirstID, LastID     string
	FirstTime, LastTime time.Time
	// Groups are the consumer groups of the topic, by name.
	Groups []GroupInfo
	// DeadLetters is the number of messages in the topic's default
	// dead-letter topic (the topic plus ".dead"), 0 when it has none.
	DeadLetters uint64
}

// GroupInfo is one consumer group of a topic.
type GroupInfo struct {
	Group string
	// Consumers are the group's consumers the server knows of.
	Consumers []ConsumerInfo
	// Pending is the number of messages delivered to the group and not yet
	// acknowledged.
	Pending uint64
	// Lag is the number of messages stored and not yet delivered to the
	// group; LagKnown is false when the server cannot tell (a Redis stream
	// whose entries were deleted or trimmed in the group's range).
	Lag      uint64
	LagKnown bool
	// OldestPending is the age of the oldest pending message, 0 when none is.
	OldestPending time.Duration
	// Redeliveries is the number of pending messages delivered more than
	// once (JetStream's num_redelivered, which counts pending messages only;
	// on Redis the XPENDING entries whose delivery count is over 1).
	Redeliveries uint64
}

// ConsumerInfo is one consumer of a group.
type ConsumerInfo struct {
	Name string
	// Pending is the number of messages delivered to it and not acknowledged.
	Pending uint64
	// Idle is how long since it last read or acknowledged.
	Idle time.Duration
}

// DeadLetter is one message of a dead-letter topic.
type DeadLetter struct {
	// Topic and ID are the dead-letter topic and the backend's id of the dead
	// letter in it (a stream sequence, a Redis entry id).
	Topic, ID string
	// Time is when the dead letter was stored.
	Time time.Time
	// SourceTopic, SourceID, Attempts and Reason are read from the metadata
	// relay writes ([MetadataSourceTopic], [MetadataSourceID],
	// [MetadataAttempts], [MetadataReason]); empty or 0 when absent.
	SourceTopic, SourceID string
	Attempts              int
	Reason                string
	UUID                  string
	Payload               []byte
	// Metadata is all of the dead letter's metadata, relay's keys included.
	Metadata map[string]string
}

// DeadLetterFilter selects dead letters. The zero value selects all, oldest
// first.
type DeadLetterFilter struct {
	// Reason, when set, keeps the dead letters whose reason it matches.
	Reason *regexp.Regexp
	// OlderThan, when positive, keeps the dead letters stored at least that
	// long ago.
	OlderThan time.Duration
	// SourceTopic, when set, keeps the dead letters of that source topic.
	SourceTopic string
	// IDs, when set, keeps the dead letters of those ids.
	IDs []string
	// Newest yields newest first.
	Newest bool
	// Limit, when positive, stops after that many.
	Limit int
}

// Match reports whether f keeps dl, now being the current time; Limit and
// order are the iterator's to apply.
func (f DeadLetterFilter) Match(dl DeadLetter, now time.Time) bool {
	if f.Reason != nil && !f.Reason.MatchString(dl.Reason) {
		return false
	}
	if f.OlderThan > 0 && (dl.Time.IsZero() || now.Sub(dl.Time) < f.OlderThan) {
		return false
	}
	if f.SourceTopic != "" && dl.SourceTopic != f.SourceTopic {
		return false
	}
	if len(f.IDs) > 0 {
		for _, id := range f.IDs {
			if id == dl.ID {
				return true
			}
		}
		return false
	}
	return true
}
